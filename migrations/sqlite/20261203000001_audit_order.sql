-- Audit rows are read in (occurred_at, id) order (the same order on every backend).
DROP INDEX audit_events_occurred_idx;
CREATE INDEX audit_events_occurred_id_idx ON audit_events (occurred_at, id);
