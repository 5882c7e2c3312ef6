-- The application registry: which application owns this database and a generation counter
-- that every change of the registry bumps. Every write transaction of a guarded binary reads
-- the generation (accountctl_write_guard, under a shared advisory lock that a migration run
-- takes exclusively), so a long-running process notices at its next write that an
-- application's `migrate` recorded hooks it lacks, and stops writing.
CREATE TABLE accountctl_registry (
    id           boolean PRIMARY KEY DEFAULT true CHECK (id),
    application  text CHECK (application IS NULL OR length(application) BETWEEN 1 AND 128),
    generation   bigint NOT NULL DEFAULT 1,
    updated_at   timestamptz
);
INSERT INTO accountctl_registry (id, generation) VALUES (true, 1);

-- Personal-data declarations are recorded beside lifecycle hooks and merge handlers.
ALTER TABLE accountctl_hooks DROP CONSTRAINT accountctl_hooks_kind_check;
ALTER TABLE accountctl_hooks ADD CONSTRAINT accountctl_hooks_kind_check
    CHECK (kind IN ('lifecycle', 'merge', 'personal_data'));

-- The registry generation, read after taking the registry lock in shared mode (the key of the
-- migration lock, "actlmigr"). A plpgsql statement takes a fresh snapshot after the lock
-- wait, so a migration that committed while this transaction waited is seen.
CREATE FUNCTION accountctl_write_guard() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(7017580653414279026);
    RETURN (SELECT generation FROM accountctl_registry);
END
$$;
