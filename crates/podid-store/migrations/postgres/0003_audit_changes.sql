-- Audit events of changes beside the broker's decisions: the event's kind,
-- the operation that made a change, and the changed fields before and after
-- (JSON objects; never a secret).
ALTER TABLE audit_events ADD COLUMN kind TEXT NOT NULL DEFAULT 'credential';
ALTER TABLE audit_events ADD COLUMN action TEXT;
ALTER TABLE audit_events ADD COLUMN before_state TEXT;
ALTER TABLE audit_events ADD COLUMN after_state TEXT;

CREATE INDEX audit_events_kind ON audit_events (kind, seq);
