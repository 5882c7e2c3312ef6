-- Workspace names are unique by the application's Unicode fold (name_folded) alone. The
-- first migration's index on lower(name) was left behind on PostgreSQL, where lower()
-- follows the locale: it refused 'istanbul' after 'İstanbul', which SQLite accepts and
-- name_folded keeps apart. Dropped, so both backends decide uniqueness the same way.
DROP INDEX IF EXISTS workspaces_name_ci_key;
