-- Work that lifecycle hooks owe a committed change. The change's own transaction records it
-- (the users a create or an import batch made, for their on_user_created hooks); it is
-- deleted once the hooks ran. A process that dies in between leaves the row, and the next
-- `user import`, `gdpr purge`, `hooks replay` (or any write command) completes it: hooks are
-- idempotent, so running them again is safe. `hook` NULL means every hook; a name, that hook
-- only (it failed; the others completed). `user_ids` is a JSON array of user ids; ids only,
-- nothing personal (like the audit trail, the rows survive an erasure pseudonymously).
CREATE TABLE owed_hook_work (
    id           TEXT PRIMARY KEY,
    event        TEXT NOT NULL CHECK (event IN ('created')),
    user_ids     TEXT NOT NULL,
    hook         TEXT CHECK (hook IS NULL OR length(hook) BETWEEN 1 AND 128),
    recorded_at  TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT
) STRICT;
CREATE INDEX owed_hook_work_recorded_idx ON owed_hook_work (recorded_at);
-- Who is running the hooks right now: the recording process (`host/pid/start`) until
-- `lease_until`. Another process takes the work over once that process is gone (same host)
-- or the lease ran out (another host).
ALTER TABLE owed_hook_work ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE owed_hook_work ADD COLUMN lease_until TEXT NOT NULL DEFAULT '1970-01-01T00:00:00+00:00';
