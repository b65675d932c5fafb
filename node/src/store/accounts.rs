//! Accounts: created only by redeeming a one-time token.

use confab_keys::{UnixTime, Username};
use rusqlite::{OptionalExtension, Row, params};

use super::tokens::{TokenError, redeemable};
use super::{Store, StoreError};

pub type AccountId = i64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: AccountId,
    pub username: String,
    pub is_admin: bool,
    pub is_ticketmaster: bool,
    pub disabled_at: Option<UnixTime>,
    pub created_at: UnixTime,
}

pub(super) const ACCOUNT_COLUMNS: &str = "a.id, a.username, a.is_admin, a.is_ticketmaster, a.disabled_at, a.created_at";

pub(super) fn account_from_row(r: &Row<'_>) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        username: r.get(1)?,
        is_admin: r.get(2)?,
        is_ticketmaster: r.get(3)?,
        disabled_at: r.get::<_, Option<i64>>(4)?.map(|t| t as u64),
        created_at: r.get::<_, i64>(5)? as u64,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SignupError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the username {0:?} is taken (names are compared without regard to case)")]
    UsernameTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for SignupError {
    fn from(e: rusqlite::Error) -> Self {
        SignupError::Store(e.into())
    }
}

impl Store {
    /// Redeems the token and creates the account in one transaction: of any number of
    /// concurrent attempts with one token, exactly one commits.
    pub fn create_account(&self, username: &Username, password_hash: &str, token_digest: &[u8], now: UnixTime) -> Result<Account, SignupError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let token = tx
            .query_row("SELECT id, used_at, revoked_at, expires_at, grants_admin FROM signup_tokens WHERE digest = ?1", params![token_digest], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?, r.get::<_, i64>(3)?, r.get::<_, bool>(4)?))
            })
            .optional()?;
        let Some((token_id, used, revoked, expires, grants_admin)) = token else {
            return Err(TokenError::Unknown.into());
        };
        redeemable(used.map(|t| t as u64), revoked.map(|t| t as u64), expires as u64, now)?;
        let taken: bool = tx.query_row("SELECT EXISTS(SELECT 1 FROM accounts WHERE username_key = ?1)", params![username.key()], |r| r.get(0))?;
        if taken {
            return Err(SignupError::UsernameTaken(username.to_string()));
        }
        tx.execute(
            "INSERT INTO accounts (username, username_key, password_hash, is_admin, is_ticketmaster, created_at) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
            params![username.as_str(), username.key(), password_hash, grants_admin, now as i64],
        )?;
        let id = tx.last_insert_rowid();
        let updated = tx.execute("UPDATE signup_tokens SET used_at = ?1, used_by = ?2 WHERE id = ?3 AND used_at IS NULL", params![now as i64, id, token_id])?;
        debug_assert_eq!(updated, 1, "the immediate transaction excludes any other redemption");
        tx.commit()?;
        Ok(Account { id, username: username.to_string(), is_admin: grants_admin, is_ticketmaster: grants_admin, disabled_at: None, created_at: now })
    }

    /// The account and its password hash, by case-folded name.
    pub fn account_for_login(&self, username_key: &str) -> Result<Option<(Account, String)>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row(&format!("SELECT {ACCOUNT_COLUMNS}, a.password_hash FROM accounts a WHERE a.username_key = ?1"), params![username_key], |r| {
                Ok((account_from_row(r)?, r.get(6)?))
            })
            .optional()?)
    }

    pub fn account_by_name(&self, username_key: &str) -> Result<Option<Account>, StoreError> {
        Ok(self.account_for_login(username_key)?.map(|(a, _)| a))
    }

    pub fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!("SELECT {ACCOUNT_COLUMNS} FROM accounts a ORDER BY a.username_key"))?;
        let rows = stmt.query_map([], account_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn set_ticketmaster(&self, username_key: &str, grant: bool) -> Result<Option<Account>, StoreError> {
        let changed = self.lock().execute("UPDATE accounts SET is_ticketmaster = ?1 WHERE username_key = ?2", params![grant, username_key])?;
        if changed == 0 {
            return Ok(None);
        }
        self.account_by_name(username_key)
    }

    /// Disables the account, ends its sessions and revokes every certificate it holds, which
    /// voids every invite it ever signed. Re-enabling does not bring those invites back.
    pub fn disable_account(&self, username_key: &str, now: UnixTime) -> Result<Option<Account>, StoreError> {
        {
            let mut conn = self.lock();
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let id: Option<AccountId> = tx.query_row("SELECT id FROM accounts WHERE username_key = ?1", params![username_key], |r| r.get(0)).optional()?;
            let Some(id) = id else { return Ok(None) };
            tx.execute("UPDATE accounts SET disabled_at = COALESCE(disabled_at, ?1) WHERE id = ?2", params![now as i64, id])?;
            tx.execute("DELETE FROM sessions WHERE account_id = ?1", params![id])?;
            tx.execute(
                "INSERT OR IGNORE INTO revocations (id, kind, revoked_at)
                 SELECT id, 'certificate', ?1 FROM certificates WHERE account_id = ?2",
                params![now as i64, id],
            )?;
            tx.commit()?;
        }
        self.account_by_name(username_key)
    }

    pub fn enable_account(&self, username_key: &str) -> Result<Option<Account>, StoreError> {
        let changed = self.lock().execute("UPDATE accounts SET disabled_at = NULL WHERE username_key = ?1", params![username_key])?;
        if changed == 0 {
            return Ok(None);
        }
        self.account_by_name(username_key)
    }
}
