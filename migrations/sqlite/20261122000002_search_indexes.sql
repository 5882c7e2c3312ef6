-- SQLite compares text bytewise (BINARY) by default, so users_username_ci_key on
-- lower(username) already serves ordering, --after and --search ranges; emails are served by
-- passports_value_key (kind, value). This migration keeps the version history aligned with
-- PostgreSQL's and adds the live-users index the list query uses.
CREATE INDEX users_username_live_idx ON users (lower(username)) WHERE deleted_at IS NULL;
