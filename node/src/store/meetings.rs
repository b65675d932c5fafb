//! Meetings, the certificates the node signed, the invites account holders registered, and
//! the revocation list that verification consults.

use confab_keys::{CapabilityId, RevocationSet, UnixTime};
use rusqlite::{OptionalExtension, params};

use super::{AccountId, Store, StoreError};
pub use crate::meeting::room::MeetingSettings;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meeting {
    pub room: String,
    pub owner_id: AccountId,
    pub owner: String,
    pub created_at: UnixTime,
    /// The owner's account is disabled: its meetings admit nobody.
    pub owner_disabled: bool,
    pub settings: MeetingSettings,
    /// What people see instead of the room name, if the owner gave one ("" if not).
    pub title: String,
}

/// The columns [`meeting_row`] reads, in order.
const MEETING_COLUMNS: &str = "m.room, m.owner_id, a.username, m.created_at, a.disabled_at IS NOT NULL, m.lobby, m.share, m.muted_above, m.title, m.opens_at";

fn meeting_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Meeting> {
    let settings = MeetingSettings {
        lobby: r.get(5)?,
        share_hosts_only: r.get::<_, String>(6)? == "hosts",
        muted_above: r.get::<_, i64>(7)?.clamp(0, u32::MAX as i64) as u32,
        opens_at: r.get::<_, i64>(9)?.max(0) as u64,
    };
    Ok(Meeting {
        room: r.get(0)?,
        owner_id: r.get(1)?,
        owner: r.get(2)?,
        created_at: r.get::<_, i64>(3)? as u64,
        owner_disabled: r.get(4)?,
        settings,
        title: r.get(8)?,
    })
}

#[derive(Debug, Clone)]
pub struct InviteRecord {
    pub id: CapabilityId,
    pub room: String,
    pub account_id: AccountId,
    pub certificate_id: CapabilityId,
    pub role: String,
    pub not_before: UnixTime,
    pub expires_at: UnixTime,
    pub created_at: UnixTime,
    pub revoked: bool,
    /// The invite itself, when it was registered with it (the owner may copy it again).
    pub text: Option<String>,
    /// The one person it was made for, if its owner named them.
    pub for_whom: Option<String>,
}

fn id_from_blob(blob: Vec<u8>) -> CapabilityId {
    let mut id = [0u8; 16];
    if blob.len() == 16 {
        id.copy_from_slice(&blob);
    }
    CapabilityId(id)
}

impl Store {
    /// `Ok(None)` when the name is taken.
    pub fn create_meeting(&self, room: &str, owner: AccountId, now: UnixTime) -> Result<Option<Meeting>, StoreError> {
        let inserted =
            self.lock().execute("INSERT OR IGNORE INTO meetings (room, owner_id, created_at) VALUES (?1, ?2, ?3)", params![room, owner, now as i64])?;
        if inserted == 0 {
            return Ok(None);
        }
        self.meeting(room)
    }

    pub fn meeting(&self, room: &str) -> Result<Option<Meeting>, StoreError> {
        let conn = self.lock();
        let sql = format!("SELECT {MEETING_COLUMNS} FROM meetings m JOIN accounts a ON a.id = m.owner_id WHERE m.room = ?1");
        Ok(conn.query_row(&sql, params![room], meeting_row).optional()?)
    }

    pub fn meetings_of(&self, owner: AccountId) -> Result<Vec<Meeting>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {MEETING_COLUMNS} FROM meetings m JOIN accounts a ON a.id = m.owner_id WHERE m.owner_id = ?1 ORDER BY m.created_at DESC, m.room"
        ))?;
        let rows = stmt.query_map(params![owner], meeting_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Gives `room` a title for people, if `owner` owns it; `Ok(None)` when it does not.
    pub fn set_meeting_title(&self, room: &str, owner: AccountId, title: &str) -> Result<Option<Meeting>, StoreError> {
        let changed = self.lock().execute("UPDATE meetings SET title = ?1 WHERE room = ?2 AND owner_id = ?3", params![title, room, owner])?;
        if changed == 0 {
            return Ok(None);
        }
        self.meeting(room)
    }

    /// Deletes `room` if `owner` owns it, revoking every invite registered to it in the same
    /// transaction; `Ok(false)` when there is no such meeting of theirs.
    pub fn delete_meeting(&self, room: &str, owner: AccountId, now: UnixTime) -> Result<bool, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT OR IGNORE INTO invite_revocations (certificate_id, invite_id, revoked_at)
             SELECT certificate_id, id, ?1 FROM invites WHERE room = ?2 AND account_id = ?3",
            params![now as i64, room, owner],
        )?;
        let deleted = tx.execute("DELETE FROM meetings WHERE room = ?1 AND owner_id = ?2", params![room, owner])?;
        tx.commit()?;
        Ok(deleted == 1)
    }

    /// Changes the settings of `room` if `owner` owns it; `Ok(None)` when it does not (or
    /// there is no such meeting).
    pub fn set_meeting_settings(&self, room: &str, owner: AccountId, settings: MeetingSettings) -> Result<Option<Meeting>, StoreError> {
        let share = if settings.share_hosts_only { "hosts" } else { "everyone" };
        let changed = self.lock().execute(
            "UPDATE meetings SET lobby = ?1, share = ?2, muted_above = ?3, opens_at = ?4 WHERE room = ?5 AND owner_id = ?6",
            params![settings.lobby, share, settings.muted_above, settings.opens_at as i64, room, owner],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        self.meeting(room)
    }

    /// Records a certificate the node signed, in the same statement that checks the account
    /// is not disabled: a disable either comes first (and this refuses) or revokes it.
    pub fn record_certificate(
        &self,
        id: CapabilityId,
        account: AccountId,
        public_key: &[u8; 32],
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<(), StoreError> {
        let inserted = self.lock().execute(
            "INSERT INTO certificates (id, account_id, public_key, issued_at, expires_at)
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS(SELECT 1 FROM accounts WHERE id = ?2 AND disabled_at IS NULL)",
            params![&id.0[..], account, &public_key[..], now as i64, expires_at as i64],
        )?;
        if inserted == 0 {
            return Err(StoreError::AccountDisabled);
        }
        Ok(())
    }

    pub fn certificate_owner(&self, id: CapabilityId) -> Result<Option<AccountId>, StoreError> {
        let conn = self.lock();
        Ok(conn.query_row("SELECT account_id FROM certificates WHERE id = ?1", params![&id.0[..]], |r| r.get(0)).optional()?)
    }

    /// Certificates of the account that are neither revoked nor expired.
    pub fn live_certificates(&self, account: AccountId, now: UnixTime) -> Result<Vec<CapabilityId>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT c.id FROM certificates c
             WHERE c.account_id = ?1 AND c.expires_at > ?2 AND NOT EXISTS (SELECT 1 FROM revocations r WHERE r.id = c.id)",
        )?;
        let rows = stmt.query_map(params![account, now as i64], |r| r.get::<_, Vec<u8>>(0))?;
        Ok(rows.map(|r| r.map(id_from_blob)).collect::<Result<_, _>>()?)
    }

    /// `Ok(false)` when that invite id was already registered.
    pub fn record_invite(&self, invite: &InviteRecord) -> Result<bool, StoreError> {
        let inserted = self.lock().execute(
            "INSERT OR IGNORE INTO invites (id, room, account_id, certificate_id, role, not_before, expires_at, created_at, text, for_whom)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                &invite.id.0[..],
                invite.room,
                invite.account_id,
                &invite.certificate_id.0[..],
                invite.role,
                invite.not_before as i64,
                invite.expires_at as i64,
                invite.created_at as i64,
                invite.text,
                invite.for_whom
            ],
        )?;
        Ok(inserted == 1)
    }

    pub fn invites_of(&self, account: AccountId) -> Result<Vec<InviteRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT i.id, i.room, i.account_id, i.certificate_id, i.role, i.not_before, i.expires_at, i.created_at,
                    EXISTS(SELECT 1 FROM invite_revocations r WHERE r.certificate_id = i.certificate_id AND r.invite_id = i.id)
                    OR EXISTS(SELECT 1 FROM revocations r WHERE r.id = i.certificate_id),
                    i.text, i.for_whom
             FROM invites i WHERE i.account_id = ?1 ORDER BY i.created_at DESC",
        )?;
        let rows = stmt.query_map(params![account], |r| {
            Ok(InviteRecord {
                id: id_from_blob(r.get(0)?),
                room: r.get(1)?,
                account_id: r.get(2)?,
                certificate_id: id_from_blob(r.get(3)?),
                role: r.get(4)?,
                not_before: r.get::<_, i64>(5)? as u64,
                expires_at: r.get::<_, i64>(6)? as u64,
                created_at: r.get::<_, i64>(7)? as u64,
                revoked: r.get(8)?,
                text: r.get(9)?,
                for_whom: r.get(10)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes one of `account`'s registered invites (under whichever of its certificates
    /// registered it). `Ok(None)` if it has no such invite, `Ok(Some(false))` if it was
    /// already revoked.
    pub fn revoke_invite(&self, account: AccountId, id: CapabilityId, now: UnixTime) -> Result<Option<bool>, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let certificates: Vec<Vec<u8>> = {
            let mut stmt = tx.prepare("SELECT certificate_id FROM invites WHERE id = ?1 AND account_id = ?2")?;
            stmt.query_map(params![&id.0[..], account], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        if certificates.is_empty() {
            return Ok(None);
        }
        let mut inserted = 0;
        for certificate in &certificates {
            inserted += tx.execute(
                "INSERT OR IGNORE INTO invite_revocations (certificate_id, invite_id, revoked_at) VALUES (?1, ?2, ?3)",
                params![certificate, &id.0[..], now as i64],
            )?;
        }
        tx.commit()?;
        Ok(Some(inserted > 0))
    }

    /// Whether the invite (under that certificate) was registered as made for one person.
    pub fn invite_is_personal(&self, certificate: CapabilityId, invite: CapabilityId) -> Result<bool, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row("SELECT for_whom IS NOT NULL FROM invites WHERE certificate_id = ?1 AND id = ?2", params![&certificate.0[..], &invite.0[..]], |r| {
                r.get(0)
            })
            .optional()?
            .unwrap_or(false))
    }

    /// Revokes one invite under one certificate, on a host's word in the meeting (the room
    /// checked it was personal).
    pub fn revoke_invite_under(&self, certificate: CapabilityId, invite: CapabilityId, now: UnixTime) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR IGNORE INTO invite_revocations (certificate_id, invite_id, revoked_at) VALUES (?1, ?2, ?3)",
            params![&certificate.0[..], &invite.0[..], now as i64],
        )?;
        Ok(())
    }

    /// What is revoked of one invite's chain (its certificate, and the invite under that
    /// certificate): the node asks this, then hands the answer to the pure verifier.
    pub fn revocations_for(&self, certificate: CapabilityId, invite: CapabilityId) -> Result<RevocationSet, StoreError> {
        let conn = self.lock();
        let mut set = RevocationSet::new();
        let certificate_revoked: bool =
            conn.prepare_cached("SELECT EXISTS(SELECT 1 FROM revocations WHERE id = ?1)")?.query_row(params![&certificate.0[..]], |r| r.get(0))?;
        if certificate_revoked {
            set = set.certificate(certificate);
        }
        let invite_revoked: bool = conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM invite_revocations WHERE certificate_id = ?1 AND invite_id = ?2)")?
            .query_row(params![&certificate.0[..], &invite.0[..]], |r| r.get(0))?;
        if invite_revoked {
            set = set.invite(certificate, invite);
        }
        Ok(set)
    }
}
