-- The hook registry: names of the lifecycle hooks and merge handlers registered by the
-- binaries that migrated this database. A binary lacking one of them refuses to write, so
-- no account change skips an application's hook.
CREATE TABLE accountctl_hooks (
    kind        TEXT NOT NULL CHECK (kind IN ('lifecycle', 'merge')),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (kind, name)
);
