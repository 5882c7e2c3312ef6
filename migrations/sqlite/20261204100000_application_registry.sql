-- The application registry: which application owns this database and a generation counter
-- that every change of the registry bumps. Every write transaction of a guarded binary reads
-- the generation (writers are serialized by BEGIN IMMEDIATE, a migration run included), so a
-- long-running process notices at its next write that an application's `migrate` recorded
-- hooks it lacks, and stops writing.
CREATE TABLE accountctl_registry (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    application  TEXT CHECK (application IS NULL OR length(application) BETWEEN 1 AND 128),
    generation   INTEGER NOT NULL DEFAULT 1,
    updated_at   TEXT
) STRICT;
INSERT INTO accountctl_registry (id, generation) VALUES (1, 1);

-- Personal-data declarations are recorded beside lifecycle hooks and merge handlers (SQLite
-- cannot alter a CHECK: the table is rebuilt).
CREATE TABLE accountctl_hooks_new (
    kind        TEXT NOT NULL CHECK (kind IN ('lifecycle', 'merge', 'personal_data')),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    recorded_at TEXT NOT NULL,
    PRIMARY KEY (kind, name)
) STRICT;
INSERT INTO accountctl_hooks_new (kind, name, recorded_at) SELECT kind, name, recorded_at FROM accountctl_hooks;
DROP TABLE accountctl_hooks;
ALTER TABLE accountctl_hooks_new RENAME TO accountctl_hooks;
