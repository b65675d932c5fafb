//! One-time sign-up tokens: issued by ticketmasters (or the CLI, or the first start), each
//! redeemable exactly once.

use confab_keys::UnixTime;
use rusqlite::{OptionalExtension, params};

use super::{AccountId, Store, StoreError};

/// Why a token cannot be redeemed. Each case tells the person something different to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this sign-up token is not valid: check that it was copied whole, or ask a ticketmaster for a new one")]
    Unknown,
    #[error("this sign-up token has already been used: each token creates exactly one account; ask a ticketmaster for a new one")]
    AlreadyUsed { at: UnixTime },
    #[error("this sign-up token has expired: ask a ticketmaster for a new one")]
    Expired { at: UnixTime },
    #[error("this sign-up token was revoked by a ticketmaster: ask a ticketmaster for a new one")]
    Revoked { at: UnixTime },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    Unused,
    Used { by: String, at: UnixTime },
    Expired { at: UnixTime },
    Revoked { at: UnixTime },
}

impl TokenStatus {
    pub fn label(&self) -> &'static str {
        match self {
            TokenStatus::Unused => "unused",
            TokenStatus::Used { .. } => "used",
            TokenStatus::Expired { .. } => "expired",
            TokenStatus::Revoked { .. } => "revoked",
        }
    }
}

#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub id: i64,
    pub note: String,
    pub issued_by: Option<String>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub grants_admin: bool,
    pub status: TokenStatus,
}

/// The state of a token row, in the order that matters to the person holding it: a used
/// token says "used" even after it would have expired.
pub(super) fn redeemable(used_at: Option<UnixTime>, revoked_at: Option<UnixTime>, expires_at: UnixTime, now: UnixTime) -> Result<(), TokenError> {
    if let Some(at) = used_at {
        return Err(TokenError::AlreadyUsed { at });
    }
    if let Some(at) = revoked_at {
        return Err(TokenError::Revoked { at });
    }
    if now >= expires_at {
        return Err(TokenError::Expired { at: expires_at });
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum RevokeTokenError {
    #[error("there is no sign-up token #{0}")]
    Unknown(i64),
    #[error("token #{0} was already used, so there is nothing to revoke")]
    AlreadyUsed(i64),
    #[error("token #{0} was already revoked")]
    AlreadyRevoked(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for RevokeTokenError {
    fn from(e: rusqlite::Error) -> Self {
        RevokeTokenError::Store(e.into())
    }
}

pub struct NewToken<'a> {
    pub digest: &'a [u8],
    pub note: &'a str,
    pub issued_by: Option<AccountId>,
    pub expires_at: UnixTime,
    pub grants_admin: bool,
}

impl Store {
    pub fn issue_token(&self, token: NewToken<'_>, now: UnixTime) -> Result<i64, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO signup_tokens (digest, note, issued_by, issued_at, expires_at, grants_admin) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![token.digest, token.note, token.issued_by, now as i64, token.expires_at as i64, token.grants_admin],
        )?;
        Ok(conn.last_insert_rowid())
    }

    /// The first-start token: while no account exists, each start replaces any earlier
    /// unused one (which only ever appeared in an old log) with a fresh token. Returns false
    /// once an account exists.
    pub fn replace_first_start_token(&self, digest: &[u8], now: UnixTime, expires_at: UnixTime) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let accounts: i64 = tx.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
        if accounts > 0 {
            return Ok(false);
        }
        tx.execute("UPDATE signup_tokens SET revoked_at = ?1 WHERE grants_admin = 1 AND used_at IS NULL AND revoked_at IS NULL", params![now as i64])?;
        tx.execute(
            "INSERT INTO signup_tokens (digest, note, issued_at, expires_at, grants_admin) VALUES (?1, 'first start: admin account', ?2, ?3, 1)",
            params![digest, now as i64, expires_at as i64],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// A read-only look, so a bad token is refused before any password is hashed. The
    /// redemption itself (in `create_account`) checks again inside its transaction.
    pub fn check_token(&self, digest: &[u8], now: UnixTime) -> Result<Result<(), TokenError>, StoreError> {
        let conn = self.lock();
        let row = conn
            .query_row("SELECT used_at, revoked_at, expires_at FROM signup_tokens WHERE digest = ?1", params![digest], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, i64>(2)?))
            })
            .optional()?;
        Ok(match row {
            None => Err(TokenError::Unknown),
            Some((used, revoked, expires)) => redeemable(used.map(|t| t as u64), revoked.map(|t| t as u64), expires as u64, now),
        })
    }

    pub fn list_tokens(&self, now: UnixTime) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT t.id, t.note, issuer.username, t.issued_at, t.expires_at, t.grants_admin, t.used_at, user.username, t.revoked_at
             FROM signup_tokens t
             LEFT JOIN accounts issuer ON issuer.id = t.issued_by
             LEFT JOIN accounts user ON user.id = t.used_by
             ORDER BY t.id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            let expires_at = r.get::<_, i64>(4)? as u64;
            let used_at: Option<i64> = r.get(6)?;
            let used_by: Option<String> = r.get(7)?;
            let revoked_at: Option<i64> = r.get(8)?;
            let status = match (used_at, revoked_at) {
                (Some(at), _) => TokenStatus::Used { by: used_by.unwrap_or_else(|| "(deleted account)".into()), at: at as u64 },
                (None, Some(at)) => TokenStatus::Revoked { at: at as u64 },
                (None, None) if now >= expires_at => TokenStatus::Expired { at: expires_at },
                (None, None) => TokenStatus::Unused,
            };
            Ok(TokenRecord {
                id: r.get(0)?,
                note: r.get(1)?,
                issued_by: r.get(2)?,
                issued_at: r.get::<_, i64>(3)? as u64,
                expires_at,
                grants_admin: r.get(5)?,
                status,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn revoke_token(&self, id: i64, now: UnixTime) -> Result<(), RevokeTokenError> {
        let conn = self.lock();
        let row = conn
            .query_row("SELECT used_at, revoked_at FROM signup_tokens WHERE id = ?1", params![id], |r| {
                Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?))
            })
            .optional()?;
        match row {
            None => Err(RevokeTokenError::Unknown(id)),
            Some((Some(_), _)) => Err(RevokeTokenError::AlreadyUsed(id)),
            Some((None, Some(_))) => Err(RevokeTokenError::AlreadyRevoked(id)),
            Some((None, None)) => {
                conn.execute("UPDATE signup_tokens SET revoked_at = ?1 WHERE id = ?2", params![now as i64, id])?;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_beats_revoked_beats_expired() {
        assert_eq!(redeemable(Some(5), Some(6), 1, 10), Err(TokenError::AlreadyUsed { at: 5 }));
        assert_eq!(redeemable(None, Some(6), 1, 10), Err(TokenError::Revoked { at: 6 }));
        assert_eq!(redeemable(None, None, 10, 10), Err(TokenError::Expired { at: 10 }));
        assert_eq!(redeemable(None, None, 11, 10), Ok(()));
    }
}
