//! The node's side of capabilities: certifying account keys, and deciding who may take a
//! seat. `admit` gathers what the pure verifier needs (the revocation state of the invite's
//! ids, the meeting's owner) from the store, then applies the node's one policy beyond the
//! signature chain: an invite counts only if it was signed by a key certified for the
//! meeting's owner.

use confab_keys::{
    AccountCertificate, CapabilityError, CapabilityId, CertificateBody, DecodeError, Invite, NodeKey, Role, RoomName, UnixTime, Username, VerifiedInvite,
    Verifier,
};

use crate::secrets::random_bytes;
use crate::store::{Account, Meeting, Store, StoreError};

/// How long an account certificate lasts. Browsers renew theirs when less than a third is
/// left; invites cannot outlive the certificate that signed them.
pub const CERTIFICATE_LIFETIME_SECS: u64 = 90 * 86_400;

/// Signs a certificate for `account`'s public key and records it, so that the key's invites
/// can be traced to the account (and voided with it).
pub fn certify(store: &Store, node_key: &NodeKey, account: &Account, public_key: [u8; 32], now: UnixTime) -> Result<AccountCertificate, StoreError> {
    let username = Username::parse(&account.username).expect("stored usernames passed the same rules at sign-up");
    let cert = node_key.certify(CertificateBody {
        id: CapabilityId(random_bytes()),
        account_key: public_key,
        username,
        max_role: Role::Host,
        not_before: now,
        expires: now + CERTIFICATE_LIFETIME_SECS,
    });
    store.record_certificate(cert.body().id, account.id, &public_key, now, cert.body().expires)?;
    Ok(cert)
}

#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    #[error(transparent)]
    Refused(#[from] CapabilityError),
    #[error("there is no meeting named {0:?} on this node")]
    UnknownRoom(String),
    #[error("the invite was signed by {issuer}, who does not own the meeting {room:?}")]
    NotOwner { issuer: String, room: String },
    #[error("the meeting {0:?} belongs to a disabled account")]
    OwnerDisabled(String),
    #[error("the invite's certificate is not one this node (or its cluster) issued")]
    UnknownCertificate,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decodes and verifies `invite_text` for a seat in `room` at time `now`. Returns what the
/// invite grants and the meeting it grants it in.
pub fn admit(store: &Store, node_keys: &[[u8; 32]], room: &RoomName, invite_text: &str, now: UnixTime) -> Result<(VerifiedInvite, Meeting), AdmissionError> {
    let invite = Invite::from_text(invite_text)?;
    let meeting = store.meeting(room.as_str())?.ok_or_else(|| AdmissionError::UnknownRoom(room.to_string()))?;
    let revoked = store.revocations_for(invite.certificate().body().id, invite.body().id)?;
    let granted = Verifier { node_keys, now, revoked: &revoked }.verify_invite(&invite, room)?;
    // Disabling revokes the owner's certificates; this holds even for one issued as the
    // account was being disabled.
    if meeting.owner_disabled {
        return Err(AdmissionError::OwnerDisabled(room.to_string()));
    }
    match store.certificate_owner(granted.certificate_id)? {
        None => Err(AdmissionError::UnknownCertificate),
        Some(owner) if owner != meeting.owner_id => Err(AdmissionError::NotOwner { issuer: granted.issuer.to_string(), room: room.to_string() }),
        Some(_) => Ok((granted, meeting)),
    }
}
