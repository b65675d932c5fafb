-- Step 2: an invite is named by its certificate and its own id, and invite revocations are
-- kept apart from certificate revocations. Invite ids are chosen by whoever signs an invite,
-- so with one table keyed by id alone, anyone could register an invite whose id was someone
-- else's certificate or invite id (both are inside every link), revoke it, and void theirs.

CREATE TABLE invites_2 (
    id             BLOB    NOT NULL,
    room           TEXT    NOT NULL,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    certificate_id BLOB    NOT NULL,
    role           TEXT    NOT NULL,
    not_before     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (certificate_id, id)
);
INSERT INTO invites_2 SELECT id, room, account_id, certificate_id, role, not_before, expires_at, created_at FROM invites;
DROP TABLE invites;
ALTER TABLE invites_2 RENAME TO invites;
CREATE INDEX invites_account ON invites(account_id);

-- Invites revoked by the account that registered them. Never deleted.
CREATE TABLE invite_revocations (
    certificate_id BLOB    NOT NULL,
    invite_id      BLOB    NOT NULL,
    revoked_at     INTEGER NOT NULL,
    PRIMARY KEY (certificate_id, invite_id)
);
-- An invite revocation made before this step held for the invite its registrant owned.
INSERT OR IGNORE INTO invite_revocations (certificate_id, invite_id, revoked_at)
    SELECT i.certificate_id, r.id, r.revoked_at FROM revocations r JOIN invites i ON i.id = r.id WHERE r.kind = 'invite';
DELETE FROM revocations WHERE kind = 'invite';
-- What remains in `revocations` are certificates the node issued (disabled accounts).
