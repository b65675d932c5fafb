//! What a cluster replicates of the store: everything a node needs to admit a seat and run a
//! meeting (accounts, certificates, meetings and their settings, registered invites, both
//! revocation lists), and what another node needs to take over as the accounts node
//! (password hashes, sign-up tokens' digests). Sessions are not replicated: after a
//! takeover people log in again. The accounts node is these tables' single writer and every
//! other member mirrors its [`Snapshot`]; revocations alone may start anywhere (a host's
//! "remove and revoke" on a meeting's home node) and are merged as a union in both
//! directions, so a revocation made anywhere holds everywhere.

use std::collections::BTreeMap;

use rusqlite::types::{Value, ValueRef};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// One value of a row, as it travels between nodes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cell {
    Null,
    Int(i64),
    Text(String),
    /// Hex digits.
    Blob(String),
}

impl Cell {
    fn from_sql(value: ValueRef<'_>) -> Cell {
        match value {
            ValueRef::Null => Cell::Null,
            ValueRef::Integer(i) => Cell::Int(i),
            // No replicated column is REAL.
            ValueRef::Real(f) => Cell::Int(f as i64),
            ValueRef::Text(t) => Cell::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Cell::Blob(crate::secrets::hex(b)),
        }
    }

    fn to_sql(&self) -> Result<Value, StoreError> {
        Ok(match self {
            Cell::Null => Value::Null,
            Cell::Int(i) => Value::Integer(*i),
            Cell::Text(t) => Value::Text(t.clone()),
            Cell::Blob(h) => Value::Blob(crate::secrets::unhex(h).ok_or(StoreError::BadReplica("a blob that is not hex"))?),
        })
    }
}

/// How a table's rows arrive from elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The accounts node's copy is the truth: rows it no longer has go (meetings deleted).
    Mirror,
    /// Rows are added or updated, never removed (accounts are disabled, not deleted).
    Upsert,
    /// Append-only: rows are added, never changed (revocations).
    Union,
}

struct Table {
    name: &'static str,
    key: &'static [&'static str],
    columns: &'static [&'static str],
    mode: Mode,
}

/// In dependency order (foreign keys point backwards).
const TABLES: &[Table] = &[
    Table {
        name: "accounts",
        key: &["id"],
        columns: &["id", "username", "username_key", "password_hash", "is_admin", "is_ticketmaster", "disabled_at", "created_at"],
        mode: Mode::Upsert,
    },
    Table {
        name: "signup_tokens",
        key: &["id"],
        columns: &["id", "digest", "note", "issued_by", "issued_at", "expires_at", "grants_admin", "used_at", "used_by", "revoked_at"],
        mode: Mode::Mirror,
    },
    Table { name: "certificates", key: &["id"], columns: &["id", "account_id", "public_key", "issued_at", "expires_at"], mode: Mode::Upsert },
    Table {
        name: "meetings",
        key: &["id"],
        columns: &["id", "room", "owner_id", "created_at", "lobby", "share", "muted_above", "title", "opens_at"],
        mode: Mode::Mirror,
    },
    Table {
        name: "invites",
        key: &["certificate_id", "id"],
        columns: &["id", "room", "account_id", "certificate_id", "role", "not_before", "expires_at", "created_at", "text", "for_whom"],
        mode: Mode::Upsert,
    },
    Table { name: "revocations", key: &["id"], columns: &["id", "kind", "revoked_at"], mode: Mode::Union },
    Table { name: "invite_revocations", key: &["certificate_id", "invite_id"], columns: &["certificate_id", "invite_id", "revoked_at"], mode: Mode::Union },
];

/// Rows of replicated tables, by table name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub tables: BTreeMap<String, Vec<Vec<Cell>>>,
}

impl Snapshot {
    pub fn rows(&self) -> usize {
        self.tables.values().map(Vec::len).sum()
    }
}

/// Which tables a snapshot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Everything replicated: what the accounts node sends.
    All,
    /// The two revocation lists: what any node sends the others.
    Revocations,
}

impl Store {
    /// A copy of the replicated tables (or of the revocations only).
    pub fn snapshot(&self, part: Part) -> Result<Snapshot, StoreError> {
        let conn = self.lock();
        let mut snapshot = Snapshot::default();
        for table in TABLES.iter().filter(|t| part == Part::All || t.mode == Mode::Union) {
            let sql = format!("SELECT {} FROM {}", table.columns.join(", "), table.name);
            let mut stmt = conn.prepare(&sql)?;
            let n = table.columns.len();
            let rows = stmt.query_map([], |r| (0..n).map(|i| r.get_ref(i).map(Cell::from_sql)).collect::<rusqlite::Result<Vec<Cell>>>())?;
            snapshot.tables.insert(table.name.to_string(), rows.collect::<rusqlite::Result<_>>()?);
        }
        Ok(snapshot)
    }

    /// Applies a snapshot from elsewhere in one transaction and returns how many rows it
    /// changed. `authoritative`: it comes from the accounts node, so mirrored tables lose the
    /// rows it lacks; from anyone else only the append-only tables are taken.
    pub fn apply_snapshot(&self, snapshot: &Snapshot, authoritative: bool) -> Result<usize, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut changed = 0;
        for table in TABLES {
            let Some(rows) = snapshot.tables.get(table.name) else { continue };
            if !authoritative && table.mode != Mode::Union {
                continue;
            }
            if rows.iter().any(|r| r.len() != table.columns.len()) {
                return Err(StoreError::BadReplica("a row with the wrong number of columns"));
            }
            if table.mode == Mode::Mirror {
                let key_at: Vec<usize> = table.key.iter().map(|k| table.columns.iter().position(|c| c == k).expect("keys are columns")).collect();
                let wanted: std::collections::HashSet<Vec<Cell>> = rows.iter().map(|r| key_at.iter().map(|&i| r[i].clone()).collect()).collect();
                let mut stmt = tx.prepare(&format!("SELECT {} FROM {}", table.key.join(", "), table.name))?;
                let present: Vec<Vec<Cell>> = stmt
                    .query_map([], |r| (0..table.key.len()).map(|i| r.get_ref(i).map(Cell::from_sql)).collect::<rusqlite::Result<Vec<Cell>>>())?
                    .collect::<rusqlite::Result<_>>()?;
                let condition = table.key.iter().enumerate().map(|(i, k)| format!("{k} = ?{}", i + 1)).collect::<Vec<_>>().join(" AND ");
                for gone in present.into_iter().filter(|k| !wanted.contains(k)) {
                    let gone: Vec<Value> = gone.iter().map(Cell::to_sql).collect::<Result<_, _>>()?;
                    changed += tx.execute(&format!("DELETE FROM {} WHERE {condition}", table.name), rusqlite::params_from_iter(gone))?;
                }
            }
            let rows: Vec<Vec<Value>> = rows.iter().map(|r| r.iter().map(Cell::to_sql).collect()).collect::<Result<_, _>>()?;
            let columns: Vec<&str> = table.columns.to_vec();
            let values: Vec<String> = (1..=table.columns.len()).map(|i| format!("?{i}")).collect();
            let on_conflict = match table.mode {
                Mode::Union => "DO NOTHING".to_string(),
                Mode::Mirror | Mode::Upsert => {
                    let set: Vec<String> = table.columns.iter().filter(|c| !table.key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
                    let differs: Vec<String> = table.columns.iter().filter(|c| !table.key.contains(c)).map(|c| format!("{c} IS NOT excluded.{c}")).collect();
                    format!("DO UPDATE SET {} WHERE {}", set.join(", "), differs.join(" OR "))
                }
            };
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({}) ON CONFLICT({}) {on_conflict}",
                table.name,
                columns.join(", "),
                values.join(", "),
                table.key.join(", ")
            );
            let mut stmt = tx.prepare(&sql)?;
            for row in rows {
                changed += stmt.execute(rusqlite::params_from_iter(row))?;
            }
        }
        tx.commit()?;
        Ok(changed)
    }

    /// Rows changed since the store was opened: when this moves, the replicated tables may
    /// have (the accounts node then tells the others to fetch a new snapshot).
    pub fn generation(&self) -> u64 {
        self.lock().total_changes()
    }
}

#[cfg(test)]
mod tests {
    use confab_keys::{CapabilityId, Username};

    use super::*;
    use crate::store::NewToken;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("confab.db")).unwrap();
        (dir, store)
    }

    fn account(store: &Store, name: &str) -> crate::store::Account {
        let digest = crate::secrets::digest(&format!("token-{name}"));
        store.issue_token(NewToken { digest: &digest, note: "", issued_by: None, expires_at: 10_000, grants_admin: false }, 1).unwrap();
        store.create_account(&Username::parse(name).unwrap(), "$argon2id$secret", &digest, 2).unwrap()
    }

    #[test]
    fn a_replica_admits_what_the_accounts_node_does_and_forgets_deleted_meetings() {
        let (_a, accounts) = store();
        let vera = account(&accounts, "vera");
        accounts.record_certificate(CapabilityId([1; 16]), vera.id, &[7; 32], 5, 500).unwrap();
        accounts.create_meeting("weekly", vera.id, 6).unwrap().unwrap();
        accounts.create_meeting("gone", vera.id, 6).unwrap().unwrap();

        let (_r, replica) = store();
        let first = accounts.snapshot(Part::All).unwrap();
        assert!(replica.apply_snapshot(&first, true).unwrap() > 0);
        assert_eq!(replica.apply_snapshot(&first, true).unwrap(), 0, "applying the same snapshot again changes nothing");
        assert_eq!(replica.meeting("weekly").unwrap().unwrap().owner, "vera");
        assert_eq!(replica.certificate_owner(CapabilityId([1; 16])).unwrap(), Some(vera.id));
        // A replica could take over as the accounts node: it has the password hashes and
        // the sign-up tokens (as digests), used or not.
        assert_eq!(replica.account_for_login("vera").unwrap().unwrap().1, "$argon2id$secret");
        assert!(replica.check_token(&crate::secrets::digest("token-vera"), 3).unwrap().is_err(), "a used token stays used");

        assert!(accounts.delete_meeting("gone", vera.id, 7).unwrap());
        accounts.disable_account("vera", 8).unwrap();
        replica.apply_snapshot(&accounts.snapshot(Part::All).unwrap(), true).unwrap();
        assert!(replica.meeting("gone").unwrap().is_none());
        assert!(replica.meeting("weekly").unwrap().unwrap().owner_disabled);
        assert!(replica.revocations_for(CapabilityId([1; 16]), CapabilityId([2; 16])).unwrap().certificates.contains(&CapabilityId([1; 16])));
    }

    #[test]
    fn revocations_flow_both_ways_and_nothing_else_from_a_replica() {
        let (_a, accounts) = store();
        let vera = account(&accounts, "vera");
        accounts.record_certificate(CapabilityId([1; 16]), vera.id, &[7; 32], 5, 500).unwrap();
        accounts.create_meeting("weekly", vera.id, 6).unwrap().unwrap();
        let (_r, replica) = store();
        replica.apply_snapshot(&accounts.snapshot(Part::All).unwrap(), true).unwrap();

        // A host on the replica revokes a personal invite; a replica's snapshot cannot
        // create or delete meetings on the accounts node.
        replica.revoke_invite_under(CapabilityId([1; 16]), CapabilityId([3; 16]), 9).unwrap();
        replica.delete_meeting("weekly", vera.id, 9).unwrap();
        let from_replica = replica.snapshot(Part::Revocations).unwrap();
        assert!(!from_replica.tables.contains_key("meetings"));
        assert_eq!(accounts.apply_snapshot(&from_replica, false).unwrap(), 1);
        assert!(
            accounts.revocations_for(CapabilityId([1; 16]), CapabilityId([3; 16])).unwrap().invites.contains(&(CapabilityId([1; 16]), CapabilityId([3; 16])))
        );
        assert!(accounts.meeting("weekly").unwrap().is_some());
        // Even a full snapshot from a node that is not the accounts node adds only revocations.
        let mut forged = replica.snapshot(Part::All).unwrap();
        forged.tables.get_mut("accounts").unwrap().clear();
        assert_eq!(accounts.apply_snapshot(&forged, false).unwrap(), 0);
    }

    #[test]
    fn malformed_rows_change_nothing() {
        let (_a, store) = store();
        let mut bad = Snapshot::default();
        bad.tables.insert("revocations".into(), vec![vec![Cell::Blob("zz".into()), Cell::Text("certificate".into()), Cell::Int(1)]]);
        assert!(store.apply_snapshot(&bad, true).is_err());
        bad.tables.insert("revocations".into(), vec![vec![Cell::Int(1)]]);
        assert!(store.apply_snapshot(&bad, true).is_err());
        assert_eq!(store.snapshot(Part::Revocations).unwrap().rows(), 0);
    }
}
