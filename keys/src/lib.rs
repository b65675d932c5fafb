//! Confab's capabilities.
//!
//! Every seat in a meeting is authorised by a chain of ed25519 signatures:
//!
//! ```text
//! node key ──signs──▶ AccountCertificate (account key, username, max role, window, id)
//!                          │
//! account key ──signs──▶ Invite (certificate, room, role, window, id)
//! ```
//!
//! The node key never leaves the node; the account key never leaves the account holder's
//! browser (or key file). The node verifies an invite with [`verify_invite`], a pure function:
//! time, the trusted node key and the revocation set are all arguments, nothing is read from a
//! clock, a file or a socket. The wire format is described in `docs/capabilities.md`.

mod certificate;
mod error;
mod invite;
mod membership;
mod names;
mod text;
mod verify;
mod wire;

pub use certificate::{AccountCertificate, CertificateBody};
pub use error::{CapabilityError, DecodeError};
pub use invite::{Invite, InviteBody};
pub use membership::{MAX_ADDRESSES, MAX_MEMBERS, Member, Membership, MembershipBody, MembershipError, Roles};
pub use names::{NameError, RoomName, Username};
pub use verify::{CLOCK_SKEW_SECS, RevocationSet, Revocations, VerifiedInvite, Verifier};

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// Seconds since the Unix epoch. Capabilities carry whole seconds.
pub type UnixTime = u64;

/// What a seat may do in a meeting. Ordered: `Guest < Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Guest = 0,
    Host = 1,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Guest => "guest",
            Role::Host => "host",
        }
    }

    fn from_byte(b: u8) -> Result<Role, DecodeError> {
        match b {
            0 => Ok(Role::Guest),
            1 => Ok(Role::Host),
            other => Err(DecodeError::UnknownRole(other)),
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "guest" => Ok(Role::Guest),
            "host" => Ok(Role::Host),
            other => Err(format!("unknown role {other:?}: expected \"guest\" or \"host\"")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 16-byte random identifier carried by certificates and invites, used for revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CapabilityId(pub [u8; 16]);

impl CapabilityId {
    /// Lower-case hex, the form shown to people and stored by the node.
    pub fn to_hex(&self) -> String {
        Self::hex_of(&self.0)
    }

    fn hex_of(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<CapabilityId> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 16];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let pair = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(CapabilityId(out))
    }
}

impl std::fmt::Display for CapabilityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The node's identity. It certifies account keys.
pub struct NodeKey(SigningKey);

impl NodeKey {
    pub fn from_seed(seed: [u8; 32]) -> NodeKey {
        NodeKey(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs a certificate for an account's public key.
    pub fn certify(&self, body: CertificateBody) -> AccountCertificate {
        let unsigned = certificate::encode_unsigned(&self.public(), &body);
        let signature = self.0.sign(&signing_input(certificate::DOMAIN, &unsigned)).to_bytes();
        AccountCertificate::from_parts(self.public(), body, signature)
    }
}

/// Shows the public key only: a secret never reaches a log through `{:?}`.
impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("public", &CapabilityId::hex_of(&self.public())).finish()
    }
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey").field("public", &CapabilityId::hex_of(&self.public())).finish()
    }
}

/// The cluster operator's key: it signs membership documents, and lives off the nodes (which
/// know its public half).
pub struct OperatorKey(SigningKey);

impl OperatorKey {
    pub fn from_seed(seed: [u8; 32]) -> OperatorKey {
        OperatorKey(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs a membership document.
    pub fn sign_membership(&self, body: MembershipBody) -> Membership {
        let unsigned = membership::encode_unsigned(&self.public(), &body);
        let signature = self.0.sign(&signing_input(membership::DOMAIN, &unsigned)).to_bytes();
        Membership::from_parts(self.public(), body, signature)
    }
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorKey").field("public", &CapabilityId::hex_of(&self.public())).finish()
    }
}

/// An account holder's key, for holders that keep it in a file (`confab invite`) and for
/// tests. Browsers hold theirs in WebCrypto and sign the same bytes.
pub struct AccountKey(SigningKey);

impl AccountKey {
    pub fn from_seed(seed: [u8; 32]) -> AccountKey {
        AccountKey(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Signs an invite under `certificate`. Nothing is checked here: an invite that claims
    /// more than the certificate holds is signed all the same and refused by the verifier.
    pub fn invite(&self, certificate: &AccountCertificate, body: InviteBody) -> Invite {
        let unsigned = invite::encode_unsigned(certificate, &body);
        let signature = self.0.sign(&signing_input(invite::DOMAIN, &unsigned)).to_bytes();
        Invite::from_parts(certificate.clone(), body, signature)
    }
}

/// Whether 32 bytes are an ed25519 public key this crate would verify against (a valid,
/// canonically encoded curve point). The node checks this before certifying a key.
pub fn is_valid_public_key(bytes: &[u8; 32]) -> bool {
    VerifyingKey::from_bytes(bytes).is_ok_and(|k| !k.is_weak())
}

/// The bytes actually signed: a domain label, then the encoded fields. The label keeps a
/// signature over one kind of capability from ever being valid for another.
fn signing_input(domain: &[u8], unsigned: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(domain.len() + unsigned.len());
    input.extend_from_slice(domain);
    input.extend_from_slice(unsigned);
    input
}

fn verify_signature(public: &[u8; 32], domain: &[u8], unsigned: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(public) else {
        return false;
    };
    let signature = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(&signing_input(domain, unsigned), &signature).is_ok()
}
