-- Confab's database. Applied in order by store::migrate; user_version records the last step.
-- Times are Unix seconds. Secrets (tokens, session ids) are stored as SHA-256 digests only.

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    username        TEXT    NOT NULL,
    username_key    TEXT    NOT NULL UNIQUE,      -- lower-cased: uniqueness ignores case
    password_hash   TEXT    NOT NULL,             -- argon2id PHC string
    is_admin        INTEGER NOT NULL DEFAULT 0,
    is_ticketmaster INTEGER NOT NULL DEFAULT 0,
    disabled_at     INTEGER,
    created_at      INTEGER NOT NULL
);

CREATE TABLE signup_tokens (
    id           INTEGER PRIMARY KEY,
    digest       BLOB    NOT NULL UNIQUE,
    note         TEXT    NOT NULL DEFAULT '',
    issued_by    INTEGER REFERENCES accounts(id),  -- NULL: the CLI or the first start
    issued_at    INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    grants_admin INTEGER NOT NULL DEFAULT 0,       -- the first-start token
    used_at      INTEGER,
    used_by      INTEGER REFERENCES accounts(id),
    revoked_at   INTEGER
);

CREATE TABLE sessions (
    digest     BLOB    PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Account certificates the node has signed (the certificate text itself is not kept).
CREATE TABLE certificates (
    id         BLOB    PRIMARY KEY,               -- 16 bytes, as in the certificate
    account_id INTEGER NOT NULL REFERENCES accounts(id),
    public_key BLOB    NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

CREATE TABLE meetings (
    id         INTEGER PRIMARY KEY,
    room       TEXT    NOT NULL UNIQUE,
    owner_id   INTEGER NOT NULL REFERENCES accounts(id),
    created_at INTEGER NOT NULL
);

-- Invites an account holder registered, so they can list and revoke them.
CREATE TABLE invites (
    id             BLOB    PRIMARY KEY,
    room           TEXT    NOT NULL,
    account_id     INTEGER NOT NULL REFERENCES accounts(id),
    certificate_id BLOB    NOT NULL,
    role           TEXT    NOT NULL,
    not_before     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);

-- Ids of invites and certificates that must no longer be honoured. Never deleted.
CREATE TABLE revocations (
    id         BLOB    PRIMARY KEY,
    kind       TEXT    NOT NULL,                  -- 'invite' | 'certificate'
    revoked_at INTEGER NOT NULL
);

CREATE INDEX sessions_account ON sessions(account_id);
CREATE INDEX certificates_account ON certificates(account_id);
CREATE INDEX invites_account ON invites(account_id);
