-- Workspace names are unique regardless of case. lower() folds only ASCII on SQLite and
-- follows the database's locale on PostgreSQL, so the two backends disagreed on whether
-- 'Ärzte' and 'ärzte' are the same name. The application now stores its own Unicode
-- lower-case fold of the name here and looks names up by it, identically on both backends.
-- Existing rows are folded with lower(), which is the same fold for them.
ALTER TABLE workspaces ADD COLUMN name_folded text;
UPDATE workspaces SET name_folded = lower(name);
CREATE UNIQUE INDEX workspaces_name_folded_key ON workspaces (name_folded);
