use crate::{CapabilityId, Role, UnixTime};

/// Why bytes or text are not a well-formed capability. Says nothing about signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the capability is empty")]
    Empty,
    #[error("the capability does not start with {expected:?}")]
    WrongPrefix { expected: &'static str },
    #[error("the capability is not valid URL-safe base64")]
    BadBase64,
    #[error("unsupported capability version {0}")]
    UnsupportedVersion(u8),
    #[error("this is not {expected} (kind byte {found})")]
    WrongKind { expected: &'static str, found: u8 },
    #[error("the capability is cut short")]
    Truncated,
    #[error("the capability has {0} unexpected bytes at its end")]
    TrailingBytes(usize),
    #[error("unknown role byte {0}")]
    UnknownRole(u8),
    #[error("the {field} is not valid UTF-8")]
    BadUtf8 { field: &'static str },
    #[error("the {field} is not acceptable: {reason}")]
    BadName { field: &'static str, reason: String },
    #[error("the validity window ends before it starts")]
    EmptyWindow,
}

/// Why a well-formed invite does not grant the seat asked for. Each variant is a different
/// thing for the person holding the link to do, so each has its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("the invite is malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the invite was issued by another Confab node")]
    WrongNode,
    #[error("the account certificate's signature does not match (the link may have been altered)")]
    BadCertificateSignature,
    #[error("the invite's signature does not match (the link may have been altered)")]
    BadInviteSignature,
    #[error("the inviting account's certificate expired at {at}")]
    CertificateExpired { at: UnixTime },
    #[error("the inviting account's certificate is not valid before {from}")]
    CertificateNotYetValid { from: UnixTime },
    #[error("the invite expired at {at}")]
    Expired { at: UnixTime },
    #[error("the invite is not valid before {from}")]
    NotYetValid { from: UnixTime },
    #[error("the invite is for meeting {invited:?}, not {requested:?}")]
    WrongRoom { invited: String, requested: String },
    #[error("the invite {id} was revoked")]
    Revoked { id: CapabilityId },
    #[error("the inviting account's certificate {id} was revoked")]
    CertificateRevoked { id: CapabilityId },
    #[error("the invite grants {granted}, not {claimed}")]
    RoleNotGranted { granted: Role, claimed: Role },
    #[error("the invite claims {role} but its issuer may grant at most {issuer_max}")]
    ExceedsIssuerRole { role: Role, issuer_max: Role },
    #[error("the invite's validity reaches beyond its issuer's certificate")]
    OutlivesIssuer,
}
