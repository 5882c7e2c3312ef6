-- accountctl schema, PostgreSQL. The logical model is the project's (docs/architecture.md); the SQLite history in
-- migrations/sqlite/ expresses the same invariants in SQLite's dialect.
--
-- Conventions:
-- * Every foreign key to users states its ON DELETE policy. CASCADE marks rows that are the
--   user's own personal data (they go with a GDPR purge); SET NULL marks references by which
--   a user merely touched another record (an invite they sent). Tables that must outlive the
--   user (audit_events, user_tombstones, erasure_requests) hold a bare, pseudonymous user id
--   with no foreign key on purpose.
-- * Timestamps are written by the application (one clock, microsecond precision) rather than
--   DEFAULT now(), so both backends store the same instants.

CREATE TABLE persons (
    id            uuid PRIMARY KEY,
    given_name    text,
    family_name   text,
    display_name  text,
    phone         text,
    locale        text,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE users (
    id                   uuid PRIMARY KEY,
    person_id            uuid NOT NULL UNIQUE REFERENCES persons (id) ON DELETE RESTRICT,
    username             text NOT NULL,
    role                 text NOT NULL DEFAULT 'user',
    is_external          boolean NOT NULL DEFAULT false,
    active               boolean NOT NULL DEFAULT true,
    password_hash        text,
    storage_quota_bytes  bigint,
    storage_used_bytes   bigint NOT NULL DEFAULT 0,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    last_login_at        timestamptz,
    deleted_at           timestamptz,
    purge_after          timestamptz,
    CONSTRAINT users_username_format CHECK (username ~ '^[A-Za-z0-9._-]{2,64}$'),
    CONSTRAINT users_role_known CHECK (role IN ('admin', 'user')),
    -- Granting admin to a federated principal would let an external identity
    -- provider manage the instance; conversion to internal is a deliberate first step.
    CONSTRAINT users_external_never_admin CHECK (NOT (is_external AND role = 'admin')),
    -- External users are grant-only recipients and consume no storage.
    CONSTRAINT users_external_no_storage CHECK (NOT is_external OR storage_used_bytes = 0),
    CONSTRAINT users_storage_non_negative CHECK (storage_used_bytes >= 0
        AND (storage_quota_bytes IS NULL OR storage_quota_bytes >= 0)),
    -- A trashed user is exactly one with both trash fields set, and is never active.
    CONSTRAINT users_trash_fields CHECK ((deleted_at IS NULL) = (purge_after IS NULL)),
    CONSTRAINT users_trashed_inactive CHECK (deleted_at IS NULL OR NOT active),
    CONSTRAINT users_password_phc CHECK (password_hash IS NULL OR password_hash LIKE '$%')
);
CREATE UNIQUE INDEX users_username_ci_key ON users (lower(username));
CREATE INDEX users_trash_purge_idx ON users (purge_after) WHERE deleted_at IS NOT NULL;
CREATE INDEX users_role_idx ON users (role);

CREATE TABLE passports (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         text NOT NULL,
    value        text NOT NULL,
    verified_at  timestamptz,
    is_primary   boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    CONSTRAINT passports_kind_known CHECK (kind IN ('email', 'phone')),
    -- Values are stored normalized: emails lower-case (so uniqueness is case-insensitive),
    -- phones in E.164 form.
    CONSTRAINT passports_email_normalized CHECK (kind <> 'email' OR (value = lower(value) AND value LIKE '_%@_%')),
    CONSTRAINT passports_phone_normalized CHECK (kind <> 'phone' OR value ~ '^\+[1-9][0-9]{6,14}$')
);
CREATE UNIQUE INDEX passports_value_key ON passports (kind, value);
CREATE UNIQUE INDEX passports_one_primary_per_kind ON passports (user_id, kind) WHERE is_primary;
CREATE INDEX passports_user_idx ON passports (user_id);

CREATE TABLE external_identities (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider          text NOT NULL CHECK (length(provider) BETWEEN 1 AND 128),
    subject           text NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    created_at        timestamptz NOT NULL,
    last_verified_at  timestamptz,
    CONSTRAINT external_identities_provider_subject_key UNIQUE (provider, subject)
);
CREATE INDEX external_identities_user_idx ON external_identities (user_id);

CREATE TABLE workspace_types (
    id            uuid PRIMARY KEY,
    slug          text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    -- JSON array of capability keys, e.g. ["docs.read","docs.*"].
    capabilities  text NOT NULL DEFAULT '[]',
    created_at    timestamptz NOT NULL
);

CREATE TABLE workspaces (
    id          uuid PRIMARY KEY,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    type_id     uuid NOT NULL REFERENCES workspace_types (id) ON DELETE RESTRICT,
    parent_id   uuid REFERENCES workspaces (id) ON DELETE RESTRICT,
    is_root     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    CONSTRAINT workspaces_root_has_no_parent CHECK (NOT is_root OR parent_id IS NULL)
);
CREATE UNIQUE INDEX workspaces_name_ci_key ON workspaces (lower(name));
-- Every instance has exactly one root workspace (Fireback's workspace model).
CREATE UNIQUE INDEX workspaces_one_root ON workspaces (is_root) WHERE is_root;

CREATE TABLE roles (
    id            uuid PRIMARY KEY,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
    capabilities  text NOT NULL DEFAULT '[]',
    is_system     boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    CONSTRAINT roles_id_workspace_key UNIQUE (id, workspace_id)
);
CREATE UNIQUE INDEX roles_name_ci_key ON roles (workspace_id, lower(name));

CREATE TABLE memberships (
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    workspace_id  uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role_id       uuid NOT NULL,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (user_id, workspace_id, role_id),
    -- The role must belong to the membership's workspace.
    CONSTRAINT memberships_role_in_workspace FOREIGN KEY (role_id, workspace_id)
        REFERENCES roles (id, workspace_id) ON DELETE CASCADE
);
CREATE INDEX memberships_workspace_idx ON memberships (workspace_id);

CREATE TABLE invites (
    id                   uuid PRIMARY KEY,
    workspace_id         uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role_id              uuid NOT NULL,
    passport_kind        text NOT NULL CHECK (passport_kind IN ('email', 'phone')),
    passport_value       text NOT NULL,
    force_passport       boolean NOT NULL DEFAULT false,
    -- Set when the passport already belonged to a user at invite time.
    invitee_user_id      uuid REFERENCES users (id) ON DELETE CASCADE,
    -- The person to be, for an invite to someone who is not a user yet.
    person_id            uuid REFERENCES persons (id) ON DELETE SET NULL,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash           text NOT NULL UNIQUE,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'accepted', 'revoked', 'expired')),
    expires_at           timestamptz NOT NULL,
    created_by           text NOT NULL,
    created_at           timestamptz NOT NULL,
    accepted_at          timestamptz,
    accepted_by_user_id  uuid REFERENCES users (id) ON DELETE SET NULL,
    CONSTRAINT invites_role_in_workspace FOREIGN KEY (role_id, workspace_id)
        REFERENCES roles (id, workspace_id) ON DELETE CASCADE,
    CONSTRAINT invites_accepted_fields CHECK ((status = 'accepted') = (accepted_at IS NOT NULL))
);
CREATE INDEX invites_pending_expiry_idx ON invites (expires_at) WHERE status = 'pending';
CREATE INDEX invites_passport_idx ON invites (passport_kind, passport_value);

CREATE TABLE notification_outbox (
    id            uuid PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('invite_email', 'invite_sms')),
    recipient     text NOT NULL,
    invite_id     uuid REFERENCES invites (id) ON DELETE CASCADE,
    user_id       uuid REFERENCES users (id) ON DELETE CASCADE,
    payload       text NOT NULL,
    created_at    timestamptz NOT NULL,
    delivered_at  timestamptz
);

CREATE TABLE sessions (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id      uuid NOT NULL,
    token_hash     text NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    last_seen_at   timestamptz,
    ip_address     text,
    user_agent     text,
    revoked_at     timestamptz,
    revoke_reason  text CHECK (revoke_reason IN ('user_initiated', 'session_expired', 'admin_revoked',
                                                 'account_disabled', 'password_changed', 'token_reused')),
    CONSTRAINT sessions_revoke_fields CHECK ((revoked_at IS NULL) = (revoke_reason IS NULL))
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_live_expiry_idx ON sessions (expires_at) WHERE revoked_at IS NULL;

CREATE TABLE folders (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    parent_id   uuid REFERENCES folders (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    is_home     boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL,
    CONSTRAINT folders_home_is_top_level CHECK (NOT is_home OR parent_id IS NULL)
);
-- One home folder per user (the OxiCloud hook design), "My Folder - {username}".
CREATE UNIQUE INDEX folders_one_home_per_user ON folders (user_id) WHERE is_home;
CREATE INDEX folders_user_idx ON folders (user_id);
CREATE INDEX folders_parent_idx ON folders (parent_id);

CREATE TABLE files (
    id          uuid PRIMARY KEY,
    folder_id   uuid NOT NULL REFERENCES folders (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    size_bytes  bigint NOT NULL CHECK (size_bytes >= 0),
    created_at  timestamptz NOT NULL
);
CREATE INDEX files_folder_idx ON files (folder_id);
CREATE INDEX files_user_idx ON files (user_id);

-- Durable record of admin actions and lifecycle events. subject_user_id is pseudonymous and
-- has no foreign key: rows outlive the user. `fields` is a JSON object of non-personal
-- values only (ids, counts, modes, reasons), never a name, email, phone or address.
CREATE TABLE audit_events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    occurred_at      timestamptz NOT NULL,
    actor            text NOT NULL,
    event            text NOT NULL,
    subject_user_id  uuid,
    fields           text NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_subject_idx ON audit_events (subject_user_id);
CREATE INDEX audit_events_occurred_idx ON audit_events (occurred_at);

CREATE TABLE user_tombstones (
    user_id      uuid PRIMARY KEY,
    deleted_at   timestamptz NOT NULL,
    mode         text NOT NULL CHECK (mode IN ('admin_delete', 'gdpr_purge', 'merged')),
    merged_into  uuid,
    CONSTRAINT user_tombstones_merge_target CHECK ((mode = 'merged') = (merged_into IS NOT NULL))
);

CREATE TABLE erasure_requests (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL,
    requested_at  timestamptz NOT NULL,
    due_at        timestamptz NOT NULL,
    requested_by  text NOT NULL,
    status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'completed', 'cancelled')),
    completed_at  timestamptz,
    last_error    text
);
CREATE UNIQUE INDEX erasure_requests_one_pending ON erasure_requests (user_id) WHERE status = 'pending';
CREATE INDEX erasure_requests_due_idx ON erasure_requests (due_at) WHERE status = 'pending';

CREATE TABLE sweeper_runs (
    id            uuid PRIMARY KEY,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    status        text NOT NULL CHECK (status IN ('running', 'ok', 'partial', 'failed', 'interrupted')),
    dry_run       boolean NOT NULL,
    purged        bigint NOT NULL DEFAULT 0,
    failed        bigint NOT NULL DEFAULT 0,
    summary       text NOT NULL DEFAULT '{}'
);
CREATE INDEX sweeper_runs_started_idx ON sweeper_runs (started_at);

-- The root workspace and its root role are undeletable.
CREATE FUNCTION accountctl_refuse_root_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the root workspace and its root role cannot be deleted'
        USING ERRCODE = 'check_violation';
END;
$$;
CREATE TRIGGER workspaces_root_undeletable BEFORE DELETE ON workspaces
    FOR EACH ROW WHEN (OLD.is_root) EXECUTE FUNCTION accountctl_refuse_root_delete();
CREATE TRIGGER roles_system_undeletable BEFORE DELETE ON roles
    FOR EACH ROW WHEN (OLD.is_system) EXECUTE FUNCTION accountctl_refuse_root_delete();
