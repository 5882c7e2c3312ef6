-- Workspace names are unique regardless of case. SQLite's lower() folds only ASCII, while
-- PostgreSQL's follows the locale, so the two backends disagreed on whether 'Ärzte' and
-- 'ärzte' are the same name. The application now stores its own Unicode lower-case fold of
-- the name here and looks names up by it, identically on both backends. Existing rows are
-- folded with lower() (ASCII); a name with other upper-case letters written before this
-- migration is still found by the lower(name) fallback of the lookup.
ALTER TABLE workspaces ADD COLUMN name_folded TEXT;
UPDATE workspaces SET name_folded = lower(name);
CREATE UNIQUE INDEX workspaces_name_folded_key ON workspaces (name_folded);
