//! The two names a capability carries, with the one set of rules the node, the CLI and the
//! decoder all apply. Both are plain ASCII so that a name can never be confused with another
//! that looks the same, and so that they are safe in a URL path.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

/// An account name: 3–32 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit. Case is
/// kept for display; uniqueness is case-insensitive ([`Username::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);

impl Username {
    pub const MAX_LEN: usize = 32;

    pub fn parse(input: &str) -> Result<Username, NameError> {
        let s = input.trim();
        if s.len() < 3 || s.len() > Self::MAX_LEN {
            return Err(NameError(format!("a username has 3 to {} characters (this one has {})", Self::MAX_LEN, s.chars().count())));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(NameError("a username starts with a letter or a digit".into()));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
            return Err(NameError(format!("a username may contain only letters, digits, '.', '_' and '-' (not {bad:?})")));
        }
        Ok(Username(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form that decides uniqueness: `Alice` and `alice` are one account.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A meeting's name as it appears in `/m/<room>`: 3–64 of `a-z 0-9 -`, starting and ending
/// with a letter or digit. Input is lower-cased by [`RoomName::normalize`] before checking.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

impl RoomName {
    pub const MAX_LEN: usize = 64;

    /// Accepts exactly the canonical form (what capabilities carry).
    pub fn parse(input: &str) -> Result<RoomName, NameError> {
        let s = input;
        if s.len() < 3 || s.len() > Self::MAX_LEN {
            return Err(NameError(format!("a meeting name has 3 to {} characters (this one has {})", Self::MAX_LEN, s.chars().count())));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
            return Err(NameError(format!("a meeting name may contain only lower-case letters, digits and '-' (not {bad:?})")));
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(NameError("a meeting name starts and ends with a letter or a digit".into()));
        }
        Ok(RoomName(s.to_string()))
    }

    /// What a person typed: surrounding space dropped, letters lower-cased, inner spaces
    /// turned into '-'.
    pub fn normalize(input: &str) -> Result<RoomName, NameError> {
        let s: String = input.trim().chars().map(|c| if c == ' ' { '-' } else { c.to_ascii_lowercase() }).collect();
        RoomName::parse(&s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("alice").is_ok());
        assert_eq!(Username::parse("  Alice.B ").unwrap().key(), "alice.b");
        for bad in ["al", "_alice", "alice smith", "ålice", "<img>", &"a".repeat(33)] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn room_names() {
        assert!(RoomName::parse("weekly-sync").is_ok());
        assert_eq!(RoomName::normalize(" Weekly Sync ").unwrap().as_str(), "weekly-sync");
        for bad in ["ab", "-ab", "ab-", "Ab-c", "a/b", "a b", &"a".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
