//! The account certificate: the node's statement that an account key belongs to an account,
//! and how much that account may grant.

use crate::wire::{Reader, put_short_str};
use crate::{CapabilityId, DecodeError, Role, UnixTime, Username, text};

pub(crate) const DOMAIN: &[u8] = b"confab/account-certificate/v1\0";
const VERSION: u8 = 1;
const KIND: u8 = 1;
const PREFIX: &str = "cfc1.";

/// What the node asserts about an account key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateBody {
    pub id: CapabilityId,
    pub account_key: [u8; 32],
    pub username: Username,
    /// The most an invite signed with this key may grant.
    pub max_role: Role,
    pub not_before: UnixTime,
    pub expires: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountCertificate {
    node_key: [u8; 32],
    body: CertificateBody,
    signature: [u8; 64],
}

impl AccountCertificate {
    pub(crate) fn from_parts(node_key: [u8; 32], body: CertificateBody, signature: [u8; 64]) -> Self {
        AccountCertificate { node_key, body, signature }
    }

    /// The node key this certificate names as its signer.
    pub fn node_key(&self) -> &[u8; 32] {
        &self.node_key
    }

    pub fn body(&self) -> &CertificateBody {
        &self.body
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = encode_unsigned(&self.node_key, &self.body);
        out.extend_from_slice(&self.signature);
        out
    }

    /// `cfc1.` followed by URL-safe base64.
    pub fn to_text(&self) -> String {
        text::encode(PREFIX, &self.to_bytes())
    }

    pub fn from_text(text: &str) -> Result<AccountCertificate, DecodeError> {
        AccountCertificate::from_bytes(&text::decode(PREFIX, text)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<AccountCertificate, DecodeError> {
        let mut reader = Reader::new(bytes);
        let cert = read(&mut reader)?;
        reader.finish()?;
        Ok(cert)
    }

    /// Whether the node key named inside signed this certificate. Which node key to trust is
    /// the verifier's business ([`crate::Verifier`]).
    pub(crate) fn signature_valid(&self) -> bool {
        let unsigned = encode_unsigned(&self.node_key, &self.body);
        crate::verify_signature(&self.node_key, DOMAIN, &unsigned, &self.signature)
    }
}

pub(crate) fn encode_unsigned(node_key: &[u8; 32], body: &CertificateBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(VERSION);
    out.push(KIND);
    out.extend_from_slice(node_key);
    out.extend_from_slice(&body.account_key);
    out.extend_from_slice(&body.id.0);
    out.extend_from_slice(&body.not_before.to_be_bytes());
    out.extend_from_slice(&body.expires.to_be_bytes());
    out.push(body.max_role as u8);
    put_short_str(&mut out, body.username.as_str());
    out
}

pub(crate) fn read(reader: &mut Reader<'_>) -> Result<AccountCertificate, DecodeError> {
    let version = reader.u8()?;
    if version != VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let kind = reader.u8()?;
    if kind != KIND {
        return Err(DecodeError::WrongKind { expected: "an account certificate", found: kind });
    }
    let node_key = reader.array()?;
    let account_key = reader.array()?;
    let id = CapabilityId(reader.array()?);
    let not_before = reader.u64()?;
    let expires = reader.u64()?;
    let max_role = Role::from_byte(reader.u8()?)?;
    let raw_name = reader.short_str("username")?;
    let username = Username::parse(raw_name)
        .ok()
        .filter(|u| u.as_str() == raw_name)
        .ok_or_else(|| DecodeError::BadName { field: "username", reason: format!("{raw_name:?}") })?;
    if expires <= not_before {
        return Err(DecodeError::EmptyWindow);
    }
    let signature = reader.array()?;
    Ok(AccountCertificate { node_key, body: CertificateBody { id, account_key, username, max_role, not_before, expires }, signature })
}
