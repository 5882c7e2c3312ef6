-- AuthzCache invalidations published through a table instead of NOTIFY (the setting
-- `invalidations = "table"`, for PostgreSQL-compatible engines without LISTEN/NOTIFY). A
-- listener polls rows past the last id it saw; the sweeper prunes old rows.
CREATE TABLE cache_invalidations (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     uuid NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL
);
CREATE INDEX cache_invalidations_created_idx ON cache_invalidations (created_at);

-- Audit rows are read in (occurred_at, id) order: an identity column is only ordered within
-- one node on distributed engines, the application-written time is ordered everywhere.
DROP INDEX audit_events_occurred_idx;
CREATE INDEX audit_events_occurred_id_idx ON audit_events (occurred_at, id);
