//! SQLite: the node's accounts, tokens, sessions, certificates, meetings and revocations.
//!
//! One connection behind a mutex. Every write is one short transaction, so requests never
//! hold the lock for long, and `BEGIN IMMEDIATE` makes the one-time-token redemption atomic
//! even against a second process (the CLI) writing to the same file. Callers on the async
//! side run these methods through `web::block`.

mod accounts;
mod meetings;
pub mod replica;
mod sessions;
mod tokens;

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;

pub use accounts::{Account, AccountId, SignupError};
pub use meetings::{InviteRecord, Meeting};
pub use tokens::{NewToken, RevokeTokenError, TokenError, TokenRecord, TokenStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The account was disabled (perhaps a moment ago, while this request was on its way).
    #[error("the account is disabled")]
    AccountDisabled,
    /// A snapshot from another node that does not fit the tables.
    #[error("a replica snapshot is malformed: {0}")]
    BadReplica(&'static str),
    #[error("the database at {path} was written by a newer Confab (schema {found}, this build knows {known})")]
    TooNew { path: String, found: i64, known: i64 },
}

const MIGRATIONS: &[&str] = &[include_str!("schema.sql"), include_str!("schema_2.sql"), include_str!("schema_3.sql"), include_str!("schema_4.sql")];

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk when it returns. NORMAL (WAL's usual) can lose the last
        // commits on power loss, and a lost revocation or disable would let people back in.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn, &path.display().to_string())?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// The database answers a query (for `/healthz`).
    pub fn check(&self) -> Result<(), StoreError> {
        self.lock().query_row("SELECT 1", [], |_| Ok(()))?;
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (the transaction rolls
        // back on drop), so the poison flag carries no information worth failing for.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn migrate(conn: &Connection, path: &str) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(StoreError::TooNew { path: path.to_string(), found: version, known });
    }
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database written before invite revocations were keyed by their certificate keeps
    /// what was revoked, and stops honouring what a stranger's revocation voided.
    #[test]
    fn step_two_moves_invite_revocations_under_their_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confab.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute_batch(
                "INSERT INTO accounts (id, username, username_key, password_hash, created_at) VALUES (1, 'vera', 'vera', 'x', 0), (2, 'mallory', 'mallory', 'x', 0);
                 INSERT INTO invites VALUES (x'0a', 'r', 1, x'c1', 'guest', 0, 99, 0);
                 INSERT INTO invites VALUES (x'0b', 'm', 2, x'c2', 'guest', 0, 99, 0);
                 INSERT INTO revocations VALUES (x'0a', 'invite', 5);
                 -- Mallory's revocation of an invite whose id was Vera's certificate id.
                 INSERT INTO revocations VALUES (x'c1', 'invite', 6);
                 INSERT INTO revocations VALUES (x'c9', 'certificate', 7);",
            )
            .unwrap();
        }
        let store = Store::open(&path).unwrap();
        let conn = store.lock();
        let moved: Vec<(Vec<u8>, Vec<u8>)> = conn
            .prepare("SELECT certificate_id, invite_id FROM invite_revocations")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(moved, vec![(vec![0xc1], vec![0x0a])]);
        let left: Vec<(Vec<u8>, String)> =
            conn.prepare("SELECT id, kind FROM revocations").unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(left, vec![(vec![0xc9], "certificate".to_string())]);
        let invites: i64 = conn.query_row("SELECT COUNT(*) FROM invites", [], |r| r.get(0)).unwrap();
        assert_eq!(invites, 2);
    }

    #[test]
    fn a_certificate_for_a_disabled_account_is_not_recorded() {
        let store = Store::open(Path::new(":memory:")).unwrap();
        store
            .lock()
            .execute_batch("INSERT INTO accounts (id, username, username_key, password_hash, created_at, disabled_at) VALUES (1, 'd', 'd', 'x', 0, 5)")
            .unwrap();
        let id = confab_keys::CapabilityId([1; 16]);
        assert!(matches!(store.record_certificate(id, 1, &[0; 32], 10, 20), Err(StoreError::AccountDisabled)));
        assert_eq!(store.certificate_owner(id).unwrap(), None);
    }
}
