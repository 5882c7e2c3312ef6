-- The invariants that matter are enforced by the database itself, so SQL that an
-- application's hook or merge handler runs through its transaction handle cannot break them
-- (the services check them first, with friendlier messages):
--   * the instance keeps at least one active admin (not in the trash);
--   * a user with a pending erasure request is inactive;
--   * the root workspace keeps a member;
--   * external users never join the root workspace (so never hold the root role); they are
--     never admins either (users_external_never_admin, a CHECK since the first migration).
-- Each message starts with its rule's name, so both backends print the same message.
-- Writers are serialized by BEGIN IMMEDIATE, so no two transactions decide at once.

CREATE TRIGGER users_keep_an_active_admin_update AFTER UPDATE OF role, active, deleted_at ON users
    WHEN OLD.role = 'admin' AND OLD.active AND OLD.deleted_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND active AND deleted_at IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'users_keep_an_active_admin: the instance must keep at least one active admin');
END;
CREATE TRIGGER users_keep_an_active_admin_delete AFTER DELETE ON users
    WHEN OLD.role = 'admin' AND OLD.active AND OLD.deleted_at IS NULL
     AND NOT EXISTS (SELECT 1 FROM users WHERE role = 'admin' AND active AND deleted_at IS NULL)
BEGIN
    SELECT RAISE(ABORT, 'users_keep_an_active_admin: the instance must keep at least one active admin');
END;

CREATE TRIGGER users_erasure_pending_inactive BEFORE UPDATE OF active ON users
    WHEN NEW.active AND NOT OLD.active
     AND EXISTS (SELECT 1 FROM erasure_requests WHERE user_id = NEW.id AND status = 'pending')
BEGIN
    SELECT RAISE(ABORT, 'users_erasure_pending_inactive: a user with a pending erasure request stays inactive (cancel the request first)');
END;
CREATE TRIGGER erasure_requests_user_inactive_insert BEFORE INSERT ON erasure_requests
    WHEN NEW.status = 'pending' AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND active)
BEGIN
    SELECT RAISE(ABORT, 'users_erasure_pending_inactive: a user with a pending erasure request stays inactive (cancel the request first)');
END;
CREATE TRIGGER erasure_requests_user_inactive_update BEFORE UPDATE OF status, user_id ON erasure_requests
    WHEN NEW.status = 'pending' AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND active)
BEGIN
    SELECT RAISE(ABORT, 'users_erasure_pending_inactive: a user with a pending erasure request stays inactive (cancel the request first)');
END;

CREATE TRIGGER memberships_root_keeps_a_member_delete AFTER DELETE ON memberships
    WHEN EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id AND is_root)
     AND NOT EXISTS (SELECT 1 FROM memberships WHERE workspace_id = OLD.workspace_id)
BEGIN
    SELECT RAISE(ABORT, 'memberships_root_keeps_a_member: the root workspace must keep a member');
END;
CREATE TRIGGER memberships_root_keeps_a_member_update AFTER UPDATE OF workspace_id ON memberships
    WHEN EXISTS (SELECT 1 FROM workspaces WHERE id = OLD.workspace_id AND is_root)
     AND NOT EXISTS (SELECT 1 FROM memberships WHERE workspace_id = OLD.workspace_id)
BEGIN
    SELECT RAISE(ABORT, 'memberships_root_keeps_a_member: the root workspace must keep a member');
END;

CREATE TRIGGER memberships_external_not_in_root_insert BEFORE INSERT ON memberships
    WHEN EXISTS (SELECT 1 FROM workspaces WHERE id = NEW.workspace_id AND is_root)
     AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND is_external)
BEGIN
    SELECT RAISE(ABORT, 'memberships_external_not_in_root: external users cannot join the root workspace or hold its roles');
END;
CREATE TRIGGER memberships_external_not_in_root_update BEFORE UPDATE ON memberships
    WHEN EXISTS (SELECT 1 FROM workspaces WHERE id = NEW.workspace_id AND is_root)
     AND EXISTS (SELECT 1 FROM users WHERE id = NEW.user_id AND is_external)
BEGIN
    SELECT RAISE(ABORT, 'memberships_external_not_in_root: external users cannot join the root workspace or hold its roles');
END;
CREATE TRIGGER users_external_not_in_root BEFORE UPDATE OF is_external ON users
    WHEN NEW.is_external AND NOT OLD.is_external
     AND EXISTS (SELECT 1 FROM memberships m JOIN workspaces w ON w.id = m.workspace_id
                 WHERE m.user_id = NEW.id AND w.is_root)
BEGIN
    SELECT RAISE(ABORT, 'memberships_external_not_in_root: external users cannot join the root workspace or hold its roles');
END;
