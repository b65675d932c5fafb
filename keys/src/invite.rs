//! The invite: an account holder's signed permission for one seat in one meeting.

use crate::wire::{Reader, put_short_str};
use crate::{AccountCertificate, CapabilityId, DecodeError, Role, RoomName, UnixTime, certificate, text};

pub(crate) const DOMAIN: &[u8] = b"confab/invite/v1\0";
const VERSION: u8 = 1;
const KIND: u8 = 2;
const PREFIX: &str = "cfi1.";

/// What the account holder grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteBody {
    pub id: CapabilityId,
    pub room: RoomName,
    pub role: Role,
    pub not_before: UnixTime,
    pub expires: UnixTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    certificate: AccountCertificate,
    body: InviteBody,
    signature: [u8; 64],
}

impl Invite {
    pub(crate) fn from_parts(certificate: AccountCertificate, body: InviteBody, signature: [u8; 64]) -> Self {
        Invite { certificate, body, signature }
    }

    pub fn certificate(&self) -> &AccountCertificate {
        &self.certificate
    }

    pub fn body(&self) -> &InviteBody {
        &self.body
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = encode_unsigned(&self.certificate, &self.body);
        out.extend_from_slice(&self.signature);
        out
    }

    /// `cfi1.` followed by URL-safe base64: what rides in the link's fragment.
    pub fn to_text(&self) -> String {
        text::encode(PREFIX, &self.to_bytes())
    }

    pub fn from_text(text: &str) -> Result<Invite, DecodeError> {
        Invite::from_bytes(&text::decode(PREFIX, text)?)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Invite, DecodeError> {
        let mut reader = Reader::new(bytes);
        let version = reader.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let kind = reader.u8()?;
        if kind != KIND {
            return Err(DecodeError::WrongKind { expected: "an invite", found: kind });
        }
        let cert_len = reader.u16()? as usize;
        let mut cert_reader = Reader::new(reader.take(cert_len)?);
        let certificate = certificate::read(&mut cert_reader)?;
        cert_reader.finish()?;
        let id = CapabilityId(reader.array()?);
        let not_before = reader.u64()?;
        let expires = reader.u64()?;
        let role = Role::from_byte(reader.u8()?)?;
        let raw_room = reader.short_str("meeting name")?;
        let room = RoomName::parse(raw_room).map_err(|e| DecodeError::BadName { field: "meeting name", reason: e.0 })?;
        if expires <= not_before {
            return Err(DecodeError::EmptyWindow);
        }
        let signature = reader.array()?;
        reader.finish()?;
        Ok(Invite { certificate, body: InviteBody { id, room, role, not_before, expires }, signature })
    }

    /// Whether the key in the embedded certificate signed this invite.
    pub(crate) fn signature_valid(&self) -> bool {
        let unsigned = encode_unsigned(&self.certificate, &self.body);
        let issuer = &self.certificate.body().account_key;
        crate::verify_signature(issuer, DOMAIN, &unsigned, &self.signature)
    }
}

pub(crate) fn encode_unsigned(certificate: &AccountCertificate, body: &InviteBody) -> Vec<u8> {
    let cert = certificate.to_bytes();
    let mut out = Vec::with_capacity(cert.len() + 128);
    out.push(VERSION);
    out.push(KIND);
    out.extend_from_slice(&(cert.len() as u16).to_be_bytes());
    out.extend_from_slice(&cert);
    out.extend_from_slice(&body.id.0);
    out.extend_from_slice(&body.not_before.to_be_bytes());
    out.extend_from_slice(&body.expires.to_be_bytes());
    out.push(body.role as u8);
    put_short_str(&mut out, body.room.as_str());
    out
}
