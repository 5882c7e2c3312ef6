-- accountctl schema, SQLite. Same logical model and invariants as migrations/postgres/, in
-- SQLite's dialect: STRICT tables, uuids as hyphenated TEXT, timestamps as RFC 3339 TEXT in
-- UTC (written by the application, so they sort as text), booleans as INTEGER 0/1.
-- See the PostgreSQL migration for the conventions on ON DELETE policies.

CREATE TABLE persons (
    id            TEXT PRIMARY KEY,
    given_name    TEXT,
    family_name   TEXT,
    display_name  TEXT,
    phone         TEXT,
    locale        TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    id                   TEXT PRIMARY KEY,
    person_id            TEXT NOT NULL UNIQUE REFERENCES persons (id) ON DELETE RESTRICT,
    username             TEXT NOT NULL,
    role                 TEXT NOT NULL DEFAULT 'user',
    is_external          INTEGER NOT NULL DEFAULT 0 CHECK (is_external IN (0, 1)),
    active               INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1)),
    password_hash        TEXT,
    storage_quota_bytes  INTEGER,
    storage_used_bytes   INTEGER NOT NULL DEFAULT 0,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    last_login_at        TEXT,
    deleted_at           TEXT,
    purge_after          TEXT,
    CONSTRAINT users_username_format CHECK (length(username) BETWEEN 2 AND 64
        AND username NOT GLOB '*[^A-Za-z0-9._-]*'),
    CONSTRAINT users_role_known CHECK (role IN ('admin', 'user')),
    CONSTRAINT users_external_never_admin CHECK (NOT (is_external AND role = 'admin')),
    CONSTRAINT users_external_no_storage CHECK (NOT is_external OR storage_used_bytes = 0),
    CONSTRAINT users_storage_non_negative CHECK (storage_used_bytes >= 0
        AND (storage_quota_bytes IS NULL OR storage_quota_bytes >= 0)),
    CONSTRAINT users_trash_fields CHECK ((deleted_at IS NULL) = (purge_after IS NULL)),
    CONSTRAINT users_trashed_inactive CHECK (deleted_at IS NULL OR NOT active),
    CONSTRAINT users_password_phc CHECK (password_hash IS NULL OR password_hash LIKE '$%')
) STRICT;
CREATE UNIQUE INDEX users_username_ci_key ON users (lower(username));
CREATE INDEX users_trash_purge_idx ON users (purge_after) WHERE deleted_at IS NOT NULL;
CREATE INDEX users_role_idx ON users (role);

CREATE TABLE passports (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL,
    verified_at  TEXT,
    is_primary   INTEGER NOT NULL DEFAULT 0 CHECK (is_primary IN (0, 1)),
    created_at   TEXT NOT NULL,
    CONSTRAINT passports_kind_known CHECK (kind IN ('email', 'phone')),
    CONSTRAINT passports_email_normalized CHECK (kind <> 'email' OR (value = lower(value) AND value LIKE '_%@_%')),
    CONSTRAINT passports_phone_normalized CHECK (kind <> 'phone' OR (value GLOB '+[1-9]*'
        AND substr(value, 2) NOT GLOB '*[^0-9]*' AND length(value) BETWEEN 8 AND 16))
) STRICT;
CREATE UNIQUE INDEX passports_value_key ON passports (kind, value);
CREATE UNIQUE INDEX passports_one_primary_per_kind ON passports (user_id, kind) WHERE is_primary;
CREATE INDEX passports_user_idx ON passports (user_id);

CREATE TABLE external_identities (
    id                TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider          TEXT NOT NULL CHECK (length(provider) BETWEEN 1 AND 128),
    subject           TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    created_at        TEXT NOT NULL,
    last_verified_at  TEXT,
    CONSTRAINT external_identities_provider_subject_key UNIQUE (provider, subject)
) STRICT;
CREATE INDEX external_identities_user_idx ON external_identities (user_id);

CREATE TABLE workspace_types (
    id            TEXT PRIMARY KEY,
    slug          TEXT NOT NULL UNIQUE CHECK (length(slug) BETWEEN 1 AND 64
                  AND slug NOT GLOB '*[^a-z0-9_-]*' AND substr(slug, 1, 1) NOT GLOB '[_-]'),
    title         TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    capabilities  TEXT NOT NULL DEFAULT '[]',
    created_at    TEXT NOT NULL
) STRICT;

CREATE TABLE workspaces (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    type_id     TEXT NOT NULL REFERENCES workspace_types (id) ON DELETE RESTRICT,
    parent_id   TEXT REFERENCES workspaces (id) ON DELETE RESTRICT,
    is_root     INTEGER NOT NULL DEFAULT 0 CHECK (is_root IN (0, 1)),
    created_at  TEXT NOT NULL,
    CONSTRAINT workspaces_root_has_no_parent CHECK (NOT is_root OR parent_id IS NULL)
) STRICT;
CREATE UNIQUE INDEX workspaces_name_ci_key ON workspaces (lower(name));
CREATE UNIQUE INDEX workspaces_one_root ON workspaces (is_root) WHERE is_root;

CREATE TABLE roles (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 64 AND name NOT GLOB '*[^A-Za-z0-9._-]*'),
    capabilities  TEXT NOT NULL DEFAULT '[]',
    is_system     INTEGER NOT NULL DEFAULT 0 CHECK (is_system IN (0, 1)),
    created_at    TEXT NOT NULL,
    CONSTRAINT roles_id_workspace_key UNIQUE (id, workspace_id)
) STRICT;
CREATE UNIQUE INDEX roles_name_ci_key ON roles (workspace_id, lower(name));

CREATE TABLE memberships (
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role_id       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (user_id, workspace_id, role_id),
    CONSTRAINT memberships_role_in_workspace FOREIGN KEY (role_id, workspace_id)
        REFERENCES roles (id, workspace_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX memberships_workspace_idx ON memberships (workspace_id);

CREATE TABLE invites (
    id                   TEXT PRIMARY KEY,
    workspace_id         TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role_id              TEXT NOT NULL,
    passport_kind        TEXT NOT NULL CHECK (passport_kind IN ('email', 'phone')),
    passport_value       TEXT NOT NULL,
    force_passport       INTEGER NOT NULL DEFAULT 0 CHECK (force_passport IN (0, 1)),
    invitee_user_id      TEXT REFERENCES users (id) ON DELETE CASCADE,
    person_id            TEXT REFERENCES persons (id) ON DELETE SET NULL,
    token_hash           TEXT NOT NULL UNIQUE,
    status               TEXT NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'accepted', 'revoked', 'expired')),
    expires_at           TEXT NOT NULL,
    created_by           TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    accepted_at          TEXT,
    accepted_by_user_id  TEXT REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT invites_role_in_workspace FOREIGN KEY (role_id, workspace_id)
        REFERENCES roles (id, workspace_id) ON DELETE CASCADE,
    CONSTRAINT invites_accepted_fields CHECK ((status = 'accepted') = (accepted_at IS NOT NULL))
) STRICT;
CREATE INDEX invites_pending_expiry_idx ON invites (expires_at) WHERE status = 'pending';
CREATE INDEX invites_passport_idx ON invites (passport_kind, passport_value);

CREATE TABLE notification_outbox (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('invite_email', 'invite_sms')),
    recipient     TEXT NOT NULL,
    invite_id     TEXT REFERENCES invites (id) ON DELETE CASCADE,
    user_id       TEXT REFERENCES users (id) ON DELETE CASCADE,
    payload       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    delivered_at  TEXT
) STRICT;

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id      TEXT NOT NULL,
    token_hash     TEXT NOT NULL UNIQUE,
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    last_seen_at   TEXT,
    ip_address     TEXT,
    user_agent     TEXT,
    revoked_at     TEXT,
    revoke_reason  TEXT CHECK (revoke_reason IN ('user_initiated', 'session_expired', 'admin_revoked',
                                                 'account_disabled', 'password_changed', 'token_reused')),
    CONSTRAINT sessions_revoke_fields CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
) STRICT;
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_live_expiry_idx ON sessions (expires_at) WHERE revoked_at IS NULL;

CREATE TABLE folders (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id   TEXT REFERENCES folders (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    is_home     INTEGER NOT NULL DEFAULT 0 CHECK (is_home IN (0, 1)),
    created_at  TEXT NOT NULL,
    CONSTRAINT folders_home_is_top_level CHECK (NOT is_home OR parent_id IS NULL)
) STRICT;
CREATE UNIQUE INDEX folders_one_home_per_user ON folders (user_id) WHERE is_home;
CREATE INDEX folders_user_idx ON folders (user_id);
CREATE INDEX folders_parent_idx ON folders (parent_id);

CREATE TABLE files (
    id          TEXT PRIMARY KEY,
    folder_id   TEXT NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    size_bytes  INTEGER NOT NULL CHECK (size_bytes >= 0),
    created_at  TEXT NOT NULL
) STRICT;
CREATE INDEX files_folder_idx ON files (folder_id);
CREATE INDEX files_user_idx ON files (user_id);

CREATE TABLE audit_events (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    occurred_at      TEXT NOT NULL,
    actor            TEXT NOT NULL,
    event            TEXT NOT NULL,
    subject_user_id  TEXT,
    fields           TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX audit_events_subject_idx ON audit_events (subject_user_id);
CREATE INDEX audit_events_occurred_idx ON audit_events (occurred_at);

CREATE TABLE user_tombstones (
    user_id      TEXT PRIMARY KEY,
    deleted_at   TEXT NOT NULL,
    mode         TEXT NOT NULL CHECK (mode IN ('admin_delete', 'gdpr_purge', 'merged')),
    merged_into  TEXT,
    CONSTRAINT user_tombstones_merge_target CHECK ((mode = 'merged') = (merged_into IS NOT NULL))
) STRICT;

CREATE TABLE erasure_requests (
    id            TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    requested_at  TEXT NOT NULL,
    due_at        TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'cancelled')),
    completed_at  TEXT,
    last_error    TEXT
) STRICT;
CREATE UNIQUE INDEX erasure_requests_one_pending ON erasure_requests (user_id) WHERE status = 'pending';
CREATE INDEX erasure_requests_due_idx ON erasure_requests (due_at) WHERE status = 'pending';

CREATE TABLE sweeper_runs (
    id            TEXT PRIMARY KEY,
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted')),
    dry_run       INTEGER NOT NULL CHECK (dry_run IN (0, 1)),
    purged        INTEGER NOT NULL DEFAULT 0,
    failed        INTEGER NOT NULL DEFAULT 0,
    summary       TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX sweeper_runs_started_idx ON sweeper_runs (started_at);

-- Cross-process AuthzCache invalidations (PostgreSQL uses pg_notify instead). A server's
-- listener polls rows past the last id it saw; the sweeper prunes old rows.
CREATE TABLE cache_invalidations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TRIGGER workspaces_root_undeletable BEFORE DELETE ON workspaces
    WHEN OLD.is_root
BEGIN
    SELECT RAISE(ABORT, 'the root workspace and its root role cannot be deleted');
END;
CREATE TRIGGER roles_system_undeletable BEFORE DELETE ON roles
    WHEN OLD.is_system
BEGIN
    SELECT RAISE(ABORT, 'the root workspace and its root role cannot be deleted');
END;
