//! Verification of an invite against everything the node trusts, as a pure function of its
//! arguments.

use std::collections::HashSet;

use crate::{AccountCertificate, CapabilityError, CapabilityId, Invite, Role, RoomName, UnixTime, Username};

/// How far apart the signer's clock and ours may be, in seconds. Applies to every
/// not-before and expiry check.
pub const CLOCK_SKEW_SECS: u64 = 60;

/// What must no longer be honoured. Certificates and invites are revoked separately, and an
/// invite by the certificate that signed it as well as its own id: invite ids are chosen by
/// whoever signs the invite, so an id alone names nothing (anyone could sign an invite whose id
/// is someone else's certificate or invite id, revoke it, and void theirs).
pub trait Revocations {
    fn certificate_revoked(&self, certificate: &CapabilityId) -> bool;
    fn invite_revoked(&self, certificate: &CapabilityId, invite: &CapabilityId) -> bool;
}

/// Revocations held in memory: what the node read from its store for one verification, or
/// a test's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationSet {
    pub certificates: HashSet<CapabilityId>,
    /// (certificate id, invite id)
    pub invites: HashSet<(CapabilityId, CapabilityId)>,
}

impl RevocationSet {
    pub fn new() -> RevocationSet {
        RevocationSet::default()
    }

    pub fn certificate(mut self, certificate: CapabilityId) -> RevocationSet {
        self.certificates.insert(certificate);
        self
    }

    pub fn invite(mut self, certificate: CapabilityId, invite: CapabilityId) -> RevocationSet {
        self.invites.insert((certificate, invite));
        self
    }
}

impl Revocations for RevocationSet {
    fn certificate_revoked(&self, certificate: &CapabilityId) -> bool {
        self.certificates.contains(certificate)
    }

    fn invite_revoked(&self, certificate: &CapabilityId, invite: &CapabilityId) -> bool {
        self.invites.contains(&(*certificate, *invite))
    }
}

/// What a verified invite grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedInvite {
    pub room: RoomName,
    pub role: Role,
    pub invite_id: CapabilityId,
    pub certificate_id: CapabilityId,
    pub issuer: Username,
    pub issuer_key: [u8; 32],
    /// The earlier of the invite's and its certificate's expiry.
    pub expires: UnixTime,
}

/// Everything verification depends on, passed in: the node keys we trust (this node's, or
/// every member's of its cluster), the time, and the revocation set.
pub struct Verifier<'a, R: Revocations + ?Sized> {
    pub node_keys: &'a [[u8; 32]],
    pub now: UnixTime,
    pub revoked: &'a R,
}

impl<R: Revocations + ?Sized> Verifier<'_, R> {
    /// Checks a certificate: signed by a node key we trust, not revoked, inside its window.
    pub fn verify_certificate(&self, cert: &AccountCertificate) -> Result<(), CapabilityError> {
        if !self.node_keys.contains(cert.node_key()) {
            return Err(CapabilityError::WrongNode);
        }
        if !cert.signature_valid() {
            return Err(CapabilityError::BadCertificateSignature);
        }
        let body = cert.body();
        if self.revoked.certificate_revoked(&body.id) {
            return Err(CapabilityError::CertificateRevoked { id: body.id });
        }
        if self.now > body.expires.saturating_add(CLOCK_SKEW_SECS) {
            return Err(CapabilityError::CertificateExpired { at: body.expires });
        }
        if self.now.saturating_add(CLOCK_SKEW_SECS) < body.not_before {
            return Err(CapabilityError::CertificateNotYetValid { from: body.not_before });
        }
        Ok(())
    }

    /// Checks the whole chain for a seat in `room`, and returns what the invite grants.
    pub fn verify_invite(&self, invite: &Invite, room: &RoomName) -> Result<VerifiedInvite, CapabilityError> {
        let cert = invite.certificate();
        self.verify_certificate(cert)?;
        if !invite.signature_valid() {
            return Err(CapabilityError::BadInviteSignature);
        }
        let body = invite.body();
        let issuer = cert.body();
        if self.revoked.invite_revoked(&issuer.id, &body.id) {
            return Err(CapabilityError::Revoked { id: body.id });
        }
        // Attenuation: an invite never grants more than its issuer holds, in role or in time.
        if body.role > issuer.max_role {
            return Err(CapabilityError::ExceedsIssuerRole { role: body.role, issuer_max: issuer.max_role });
        }
        if body.not_before < issuer.not_before || body.expires > issuer.expires {
            return Err(CapabilityError::OutlivesIssuer);
        }
        if self.now > body.expires.saturating_add(CLOCK_SKEW_SECS) {
            return Err(CapabilityError::Expired { at: body.expires });
        }
        if self.now.saturating_add(CLOCK_SKEW_SECS) < body.not_before {
            return Err(CapabilityError::NotYetValid { from: body.not_before });
        }
        if &body.room != room {
            return Err(CapabilityError::WrongRoom { invited: body.room.to_string(), requested: room.to_string() });
        }
        Ok(VerifiedInvite {
            room: body.room.clone(),
            role: body.role,
            invite_id: body.id,
            certificate_id: issuer.id,
            issuer: issuer.username.clone(),
            issuer_key: issuer.account_key,
            expires: body.expires.min(issuer.expires),
        })
    }

    /// As [`Verifier::verify_invite`], for a seat that claims `claimed`: a guest invite never
    /// seats a host.
    pub fn verify_seat(&self, invite: &Invite, room: &RoomName, claimed: Role) -> Result<VerifiedInvite, CapabilityError> {
        let granted = self.verify_invite(invite, room)?;
        if claimed > granted.role {
            return Err(CapabilityError::RoleNotGranted { granted: granted.role, claimed });
        }
        Ok(granted)
    }
}
