-- The console's table of every cluster's associations, newest modified first
-- (keyset pages on modified_at, seq), and an association's recent audit events.
CREATE INDEX associations_modified ON associations (modified_at, seq);
CREATE INDEX audit_events_association ON audit_events (association_id, seq);
