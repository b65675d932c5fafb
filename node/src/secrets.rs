//! Random secrets and how they are stored: one-time sign-up tokens and session ids are
//! high-entropy, so a SHA-256 digest is enough to store them (a slow hash buys nothing);
//! passwords are low-entropy, so they get argon2id.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the operating system's random source failed");
    out
}

pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of an even number of hex digits (either case); None for anything else.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

/// A fresh one-time sign-up token: `cft_` and 32 hex digits (128 random bits).
pub fn new_signup_token() -> String {
    format!("cft_{}", hex(&random_bytes::<16>()))
}

/// Normalises what a person pasted: surrounding space dropped, hex digits lower-cased.
pub fn normalize_token(input: &str) -> String {
    input.trim().to_ascii_lowercase()
}

pub const PASSWORD_MIN: usize = 8;
/// Argon2 costs the same whatever the length, but a megabyte password is still a megabyte to
/// read and hash; nobody types more than this.
pub const PASSWORD_MAX: usize = 1024;

pub fn check_password_rules(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < PASSWORD_MIN {
        return Err(format!("a password has at least {PASSWORD_MIN} characters"));
    }
    if password.len() > PASSWORD_MAX {
        return Err(format!("a password has at most {PASSWORD_MAX} bytes"));
    }
    Ok(())
}

/// argon2id with the crate's defaults (19 MiB, 2 passes, 1 lane: OWASP's recommendation).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::encode_b64(&random_bytes::<16>()).expect("16 bytes is a valid salt length");
    Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default parameters cannot fail on a bounded password").to_string()
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

/// Run against an unknown username so that a login for a missing account takes as long as
/// one with a wrong password, and timing does not reveal which accounts exist.
pub fn burn_password_time(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = DUMMY.get_or_init(|| hash_password("not a real password"));
    let _ = verify_password(password, stored);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_round_trip() {
        let stored = hash_password("correct horse battery");
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &stored));
        assert!(!verify_password("correct horse batterY", &stored));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_look_right() {
        let t = new_signup_token();
        assert!(t.starts_with("cft_") && t.len() == 36);
        assert_eq!(normalize_token(&format!("  {}  ", t.to_uppercase().replace("CFT_", "cft_"))), t);
        assert_ne!(new_signup_token(), t);
    }

    #[test]
    fn password_rules() {
        assert!(check_password_rules("short").is_err());
        assert!(check_password_rules("long enough").is_ok());
        assert!(check_password_rules(&"x".repeat(2000)).is_err());
    }
}
