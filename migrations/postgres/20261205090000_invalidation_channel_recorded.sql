-- The channel that carries AuthzCache invalidations between processes is a property of the
-- database, recorded here, not a per-process choice: every process reads it (a process that
-- asks for another one is refused), and `migrate --invalidations notify|table` changes it.
-- PostgreSQL publishes through NOTIFY unless the record says `table` (engines without
-- LISTEN/NOTIFY: CockroachDB, YugabyteDB).
ALTER TABLE accountctl_registry
    ADD COLUMN invalidations text NOT NULL DEFAULT 'notify'
    CHECK (invalidations IN ('notify', 'table'));
