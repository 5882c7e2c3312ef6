-- Workspace names are unique by the application's Unicode fold (name_folded) alone, as on
-- PostgreSQL, which drops its locale-dependent lower(name) index in the same version. Here
-- lower() folds only ASCII, so the index was redundant; it goes too, so one rule remains.
DROP INDEX IF EXISTS workspaces_name_ci_key;
