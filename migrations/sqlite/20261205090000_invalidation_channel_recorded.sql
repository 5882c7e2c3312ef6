-- The channel that carries AuthzCache invalidations between processes is a property of the
-- database, recorded here (see the PostgreSQL migration). SQLite has no NOTIFY: always the
-- table.
ALTER TABLE accountctl_registry
    ADD COLUMN invalidations TEXT NOT NULL DEFAULT 'table'
    CHECK (invalidations = 'table');
