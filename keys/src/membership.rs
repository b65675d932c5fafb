//! The cluster membership document: the operator's signed statement of which nodes form a
//! cluster, where each can be reached, what each does, and until when.
//!
//! ```text
//! operator key ──signs──▶ Membership (cluster id, epoch, issued, members: node key,
//!                                     roles, expiry, addresses)
//! ```
//!
//! The operator key is made by `confab cluster init` and kept off the nodes; every node
//! trusts its public half. Among valid documents of one cluster the highest epoch wins, so a
//! removal is a new document with a higher epoch. Decoding is strict: members sorted by node
//! key with no duplicates, no unknown role bits, bounded counts and lengths, nothing after
//! the signature. Verification is pure: the trusted operator key and the time are arguments.

use crate::wire::{Reader, put_short_str};
use crate::{DecodeError, UnixTime, text};

pub(crate) const DOMAIN: &[u8] = b"confab/cluster-membership/v1\0";
const VERSION: u8 = 1;
const KIND: u8 = 3;
const PREFIX: &str = "cfm1.";

/// At most this many members (the cluster's design is 2-10 nodes).
pub const MAX_MEMBERS: usize = 32;
/// At most this many addresses per member.
pub const MAX_ADDRESSES: usize = 8;
/// The longest text form accepted: 32 members with 8 long addresses each fit.
const MAX_TEXT_LEN: usize = 64 * 1024;

/// What a member does in the cluster (a bit set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles(u8);

impl Roles {
    /// Holds the accounts database (sign-up, tokens, sessions: a single writer).
    pub const ACCOUNTS: Roles = Roles(1);
    /// Serves participants: signaling and media.
    pub const MEDIA: Roles = Roles(2);
    const KNOWN: u8 = 0b11;

    pub const fn empty() -> Roles {
        Roles(0)
    }

    pub fn contains(self, other: Roles) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Roles) -> Roles {
        Roles(self.0 | other.0)
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    fn from_bits(bits: u8) -> Result<Roles, DecodeError> {
        if bits & !Roles::KNOWN != 0 {
            return Err(DecodeError::BadName { field: "member roles", reason: format!("unknown role bits {bits:#04x}") });
        }
        Ok(Roles(bits))
    }

    /// `accounts,media` style, for people.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.contains(Roles::ACCOUNTS) {
            names.push("accounts");
        }
        if self.contains(Roles::MEDIA) {
            names.push("media");
        }
        names
    }
}

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node_key: [u8; 32],
    pub roles: Roles,
    /// After this, the node is no member (the operator renews it with a new epoch).
    pub expires: UnixTime,
    /// Where other members reach it (`host:port`, each at most 255 bytes).
    pub addresses: Vec<String>,
}

/// What the operator asserts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipBody {
    pub cluster: [u8; 16],
    pub epoch: u64,
    pub issued: UnixTime,
    /// Sorted by node key, no two alike ([`MembershipBody::new`] sorts).
    pub members: Vec<Member>,
}

impl MembershipBody {
    /// A body with its members in the canonical order (sorted by node key). Fails on a
    /// duplicate node key, too many members or addresses, or an address too long.
    pub fn new(cluster: [u8; 16], epoch: u64, issued: UnixTime, mut members: Vec<Member>) -> Result<MembershipBody, DecodeError> {
        members.sort_by_key(|m| m.node_key);
        let body = MembershipBody { cluster, epoch, issued, members };
        body.check()?;
        Ok(body)
    }

    fn check(&self) -> Result<(), DecodeError> {
        let bad = |reason: String| DecodeError::BadName { field: "membership", reason };
        if self.members.len() > MAX_MEMBERS {
            return Err(bad(format!("{} members, at most {MAX_MEMBERS}", self.members.len())));
        }
        if self.members.windows(2).any(|w| w[0].node_key >= w[1].node_key) {
            return Err(bad("members are not sorted by node key, or one is listed twice".into()));
        }
        for m in &self.members {
            if m.addresses.len() > MAX_ADDRESSES {
                return Err(bad(format!("{} addresses for one member, at most {MAX_ADDRESSES}", m.addresses.len())));
            }
            if m.addresses.iter().any(|a| a.is_empty() || a.len() > u8::MAX as usize || a.chars().any(|c| c.is_whitespace() || c.is_control())) {
                return Err(bad("an address is empty, longer than 255 bytes, or has spaces or control characters".into()));
            }
            if m.expires <= self.issued {
                return Err(DecodeError::EmptyWindow);
            }
        }
        Ok(())
    }

    /// The member with `node_key`, while its membership lasts at `now`.
    pub fn member(&self, node_key: &[u8; 32], now: UnixTime) -> Option<&Member> {
        self.members.iter().find(|m| &m.node_key == node_key && now < m.expires)
    }
}

/// A membership document with the operator key that signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    operator_key: [u8; 32],
    body: MembershipBody,
    signature: [u8; 64],
}

/// Why a well-formed membership document is not to be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("the membership is malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("the membership was signed by another operator key")]
    WrongOperator,
    #[error("the membership's signature does not match (it was altered)")]
    BadSignature,
    #[error("the membership is for another cluster")]
    WrongCluster,
    #[error("the membership was issued in the future ({issued})")]
    FromTheFuture { issued: UnixTime },
}

impl Membership {
    pub(crate) fn from_parts(operator_key: [u8; 32], body: MembershipBody, signature: [u8; 64]) -> Membership {
        Membership { operator_key, body, signature }
    }

    pub fn operator_key(&self) -> &[u8; 32] {
        &self.operator_key
    }

    pub fn body(&self) -> &MembershipBody {
        &self.body
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = encode_unsigned(&self.operator_key, &self.body);
        out.extend_from_slice(&self.signature);
        out
    }

    /// `cfm1.` followed by URL-safe base64.
    pub fn to_text(&self) -> String {
        text::encode(PREFIX, &self.to_bytes())
    }

    pub fn from_text(text: &str) -> Result<Membership, DecodeError> {
        Membership::from_bytes(&text::decode_up_to(PREFIX, text, MAX_TEXT_LEN)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Membership, DecodeError> {
        let mut reader = Reader::new(bytes);
        let membership = read(&mut reader)?;
        reader.finish()?;
        Ok(membership)
    }

    /// The body, if `operator_key` signed it for `cluster` and it was not issued after `now`
    /// (allowing [`crate::CLOCK_SKEW_SECS`]).
    pub fn verify(&self, operator_key: &[u8; 32], cluster: &[u8; 16], now: UnixTime) -> Result<&MembershipBody, MembershipError> {
        if &self.operator_key != operator_key {
            return Err(MembershipError::WrongOperator);
        }
        let unsigned = encode_unsigned(&self.operator_key, &self.body);
        if !crate::verify_signature(&self.operator_key, DOMAIN, &unsigned, &self.signature) {
            return Err(MembershipError::BadSignature);
        }
        if &self.body.cluster != cluster {
            return Err(MembershipError::WrongCluster);
        }
        if self.body.issued > now.saturating_add(crate::CLOCK_SKEW_SECS) {
            return Err(MembershipError::FromTheFuture { issued: self.body.issued });
        }
        Ok(&self.body)
    }

    /// Whether this (verified) document replaces `current`: same cluster, higher epoch.
    pub fn supersedes(&self, current: &Membership) -> bool {
        self.body.cluster == current.body.cluster && self.body.epoch > current.body.epoch
    }
}

pub(crate) fn encode_unsigned(operator_key: &[u8; 32], body: &MembershipBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + body.members.len() * 96);
    out.push(VERSION);
    out.push(KIND);
    out.extend_from_slice(operator_key);
    out.extend_from_slice(&body.cluster);
    out.extend_from_slice(&body.epoch.to_be_bytes());
    out.extend_from_slice(&body.issued.to_be_bytes());
    out.push(body.members.len() as u8);
    for m in &body.members {
        out.extend_from_slice(&m.node_key);
        out.push(m.roles.bits());
        out.extend_from_slice(&m.expires.to_be_bytes());
        out.push(m.addresses.len() as u8);
        for a in &m.addresses {
            put_short_str(&mut out, a);
        }
    }
    out
}

fn read(reader: &mut Reader<'_>) -> Result<Membership, DecodeError> {
    let version = reader.u8()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = reader.u8()?;
    if kind != KIND {
        return Err(DecodeError::WrongKind { expected: "a cluster membership", found: kind });
    }
    let operator_key = reader.array()?;
    let cluster = reader.array()?;
    let epoch = reader.u64()?;
    let issued = reader.u64()?;
    let count = reader.u8()? as usize;
    if count > MAX_MEMBERS {
        return Err(DecodeError::BadName { field: "membership", reason: format!("{count} members, at most {MAX_MEMBERS}") });
    }
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let node_key = reader.array()?;
        let roles = Roles::from_bits(reader.u8()?)?;
        let expires = reader.u64()?;
        let n = reader.u8()? as usize;
        if n > MAX_ADDRESSES {
            return Err(DecodeError::BadName { field: "membership", reason: format!("{n} addresses for one member, at most {MAX_ADDRESSES}") });
        }
        let mut addresses = Vec::with_capacity(n);
        for _ in 0..n {
            addresses.push(reader.short_str("member address")?.to_string());
        }
        members.push(Member { node_key, roles, expires, addresses });
    }
    let body = MembershipBody { cluster, epoch, issued, members };
    body.check()?;
    let signature = reader.array()?;
    Ok(Membership { operator_key, body, signature })
}
