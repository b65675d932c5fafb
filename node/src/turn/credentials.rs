//! Time-limited TURN credentials, in the style of the TURN REST API
//! (draft-uberti-behave-turn-rest): the username says who and until when, the password is
//! a MAC of the username under a secret only the node knows. The node hands a pair to a
//! participant in `welcome`, after the invite was admitted; the TURN server recomputes the
//! password from the username, so it keeps no table of issued credentials, and refuses a
//! username whose time is up or whose MAC does not match.
//!
//! Username: `EXPIRY:ROOM:PARTICIPANT` (EXPIRY in Unix seconds). Password: base64url
//! (unpadded) of HMAC-SHA256(secret, username), the first 24 bytes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Who a credential was issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub room: String,
    pub participant: u64,
    pub expires_at: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("the TURN username is not one this node issued")]
    Malformed,
    #[error("the TURN credential expired at {0}")]
    Expired(u64),
}

/// The secret the node derives every TURN password from (32 random bytes, kept in the data
/// directory like the node key).
#[derive(Clone)]
pub struct TurnSecret([u8; 32]);

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

impl TurnSecret {
    pub fn from_bytes(bytes: [u8; 32]) -> TurnSecret {
        TurnSecret(bytes)
    }

    fn password(&self, username: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(username.as_bytes());
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..24])
    }

    /// A (username, password) pair for `participant` of `room`, valid until `now + ttl`.
    pub fn issue(&self, room: &str, participant: u64, now: u64, ttl: u64) -> (String, String) {
        let username = format!("{}:{room}:{participant}", now.saturating_add(ttl));
        let password = self.password(&username);
        (username, password)
    }

    /// The holder named by `username` and the password it must authenticate with, if this
    /// node issued it and it is still valid at `now`.
    pub fn check(&self, username: &str, now: u64) -> Result<(Holder, String), CredentialError> {
        let mut parts = username.splitn(3, ':');
        let (Some(expiry), Some(room), Some(participant)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(CredentialError::Malformed);
        };
        let expires_at: u64 = expiry.parse().map_err(|_| CredentialError::Malformed)?;
        let participant: u64 = participant.parse().map_err(|_| CredentialError::Malformed)?;
        if room.is_empty() {
            return Err(CredentialError::Malformed);
        }
        if now >= expires_at {
            return Err(CredentialError::Expired(expires_at));
        }
        Ok((Holder { room: room.to_string(), participant, expires_at }, self.password(username)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(n: u8) -> TurnSecret {
        TurnSecret::from_bytes([n; 32])
    }

    #[test]
    fn issued_credentials_check_out_until_they_expire() {
        let (username, password) = secret(1).issue("book-club", 7, 1_000, 3_600);
        assert_eq!(username, "4600:book-club:7");
        let (holder, expected) = secret(1).check(&username, 4_599).unwrap();
        assert_eq!(holder, Holder { room: "book-club".into(), participant: 7, expires_at: 4_600 });
        assert_eq!(expected, password);
        assert_eq!(secret(1).check(&username, 4_600), Err(CredentialError::Expired(4_600)));
    }

    #[test]
    fn another_node_or_an_edited_username_gets_another_password() {
        let (username, password) = secret(1).issue("r", 7, 0, 60);
        assert_ne!(secret(2).check(&username, 1).unwrap().1, password, "another node's secret");
        // Extending the expiry or taking another seat changes what the password must be.
        assert_ne!(secret(1).check("9999:r:7", 1).unwrap().1, password);
        assert_ne!(secret(1).check("60:r:8", 1).unwrap().1, password);
    }

    #[test]
    fn usernames_the_node_never_issues_are_refused() {
        for bad in ["", "alice", "60:r", "x:r:7", "60::7", "60:r:x", "-5:r:7"] {
            assert_eq!(secret(1).check(bad, 0).map(|_| ()), Err(CredentialError::Malformed), "{bad:?}");
        }
    }
}
