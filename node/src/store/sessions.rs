//! Login sessions, keyed by the digest of the cookie's random value.

use confab_keys::UnixTime;
use rusqlite::{OptionalExtension, params};

use super::accounts::{ACCOUNT_COLUMNS, account_from_row};
use super::{Account, AccountId, Store, StoreError};

impl Store {
    pub fn create_session(&self, digest: &[u8], account: AccountId, now: UnixTime, expires_at: UnixTime) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", params![now as i64])?;
        conn.execute(
            "INSERT INTO sessions (digest, account_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![digest, account, now as i64, expires_at as i64],
        )?;
        Ok(())
    }

    /// The session's account, if the session is live and the account enabled.
    pub fn session_account(&self, digest: &[u8], now: UnixTime) -> Result<Option<Account>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM sessions s JOIN accounts a ON a.id = s.account_id
                     WHERE s.digest = ?1 AND s.expires_at > ?2 AND a.disabled_at IS NULL"
                ),
                params![digest, now as i64],
                account_from_row,
            )
            .optional()?)
    }

    pub fn delete_session(&self, digest: &[u8]) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM sessions WHERE digest = ?1", params![digest])?;
        Ok(())
    }
}
