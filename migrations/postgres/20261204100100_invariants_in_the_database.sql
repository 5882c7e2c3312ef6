-- The invariants that matter are enforced by the database itself, so SQL that an
-- application's hook or merge handler runs through its transaction handle cannot break them
-- (the services check them first, with friendlier messages):
--   * the instance keeps at least one active admin (not in the trash);
--   * a user with a pending erasure request is inactive;
--   * the root workspace keeps a member;
--   * external users never join the root workspace (so never hold the root role); they are
--     never admins either (users_external_never_admin, a CHECK since the first migration).
-- Each refusal names its rule as the constraint, so both backends print the same message.

CREATE FUNCTION accountctl_keep_an_active_admin() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.role = 'admin' AND OLD.active AND OLD.deleted_at IS NULL THEN
        -- The lock the services take for every decision about the admins ("acctadm1"): two
        -- transactions removing the last two admins are serialized, and the second one's
        -- check (a fresh snapshot after the wait) sees the first's commit.
        PERFORM pg_advisory_xact_lock(7017561995874692401);
        IF NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND active AND deleted_at IS NULL) THEN
            RAISE EXCEPTION 'users_keep_an_active_admin: the instance must keep at least one active admin'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'users_keep_an_active_admin';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_keep_an_active_admin AFTER UPDATE OF role, active, deleted_at OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION accountctl_keep_an_active_admin();

CREATE FUNCTION accountctl_erasure_pending_user_active() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM erasure_requests WHERE user_id = NEW.id AND status = 'pending') THEN
        RAISE EXCEPTION 'users_erasure_pending_inactive: a user with a pending erasure request stays inactive (cancel the request first)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_erasure_pending_inactive';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_erasure_pending_inactive BEFORE UPDATE OF active ON users
    FOR EACH ROW WHEN (NEW.active AND NOT OLD.active) EXECUTE FUNCTION accountctl_erasure_pending_user_active();

CREATE FUNCTION accountctl_erasure_pending_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND active) THEN
        RAISE EXCEPTION 'users_erasure_pending_inactive: a user with a pending erasure request stays inactive (cancel the request first)'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'users_erasure_pending_inactive';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER erasure_requests_user_inactive BEFORE INSERT OR UPDATE OF status, user_id ON erasure_requests
    FOR EACH ROW WHEN (NEW.status = 'pending') EXECUTE FUNCTION accountctl_erasure_pending_request();

CREATE FUNCTION accountctl_root_keeps_a_member() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id AND is_root)
       AND NOT EXISTS (SELECT 1 FROM memberships WHERE workspace_id = OLD.workspace_id) THEN
        RAISE EXCEPTION 'memberships_root_keeps_a_member: the root workspace must keep a member'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'memberships_root_keeps_a_member';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER memberships_root_keeps_a_member AFTER DELETE OR UPDATE OF workspace_id ON memberships
    FOR EACH ROW EXECUTE FUNCTION accountctl_root_keeps_a_member();

CREATE FUNCTION accountctl_external_not_in_root() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM workspaces WHERE id = NEW.workspace_id AND is_root)
       AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND is_external) THEN
        RAISE EXCEPTION 'memberships_external_not_in_root: external users cannot join the root workspace or hold its roles'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'memberships_external_not_in_root';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER memberships_external_not_in_root BEFORE INSERT OR UPDATE ON memberships
    FOR EACH ROW EXECUTE FUNCTION accountctl_external_not_in_root();

CREATE FUNCTION accountctl_external_user_not_in_root() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
               WHERE m.user_id = NEW.id AND w.is_root) THEN
        RAISE EXCEPTION 'memberships_external_not_in_root: external users cannot join the root workspace or hold its roles'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'memberships_external_not_in_root';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER users_external_not_in_root BEFORE UPDATE OF is_external ON users
    FOR EACH ROW WHEN (NEW.is_external AND NOT OLD.is_external) EXECUTE FUNCTION accountctl_external_user_not_in_root();
