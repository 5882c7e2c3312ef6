-- Every list command pages by keyset (`--limit`, `--after`, `--all`): each page is a range
-- of an index read in order, so it costs the same however deep it is. Users, workspaces,
-- workspace types and roles page along indexes that exist already; these add the order
-- of the newest-first listings. The members of a workspace are found by
-- memberships_workspace_idx.
CREATE INDEX invites_created_idx ON invites (created_at, id);
CREATE INDEX invites_workspace_created_idx ON invites (workspace_id, created_at, id);
CREATE INDEX sessions_user_created_idx ON sessions (user_id, created_at, id);
-- The new index leads with user_id, so it serves every lookup of a user's sessions (the
-- foreign key's included) that the old one did.
DROP INDEX sessions_user_idx;
