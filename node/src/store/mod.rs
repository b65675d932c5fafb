//! SQLite: the node's accounts, tokens, sessions, certificates, meetings and revocations.
//!
//! One connection behind a mutex. Every write is one short transaction, so requests never
//! hold the lock for long, and `BEGIN IMMEDIATE` makes the one-time-token redemption atomic
//! even against a second process (the CLI) writing to the same file. Callers on the async
//! side run these methods through `web::block`.

mod accounts;
mod meetings;
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
    #[error("the database at {path} was written by a newer Confab (schema {found}, this build knows {known})")]
    TooNew { path: String, found: i64, known: i64 },
}

const MIGRATIONS: &[&str] = &[include_str!("schema.sql")];

pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
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
