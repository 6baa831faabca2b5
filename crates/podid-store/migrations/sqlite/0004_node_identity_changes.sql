-- Issue 14: how a cluster's agents authenticate, node binding, the API server
-- asked with TokenReview (its token is a credential: never shown), the nodes an
-- audit event names, and the change feed of a cluster's associations.
ALTER TABLE clusters ADD COLUMN agent_identity TEXT NOT NULL DEFAULT 'key';
ALTER TABLE clusters ADD COLUMN agent_service_account TEXT NOT NULL DEFAULT 'podid-system/podid-agent';
ALTER TABLE clusters ADD COLUMN node_binding INTEGER NOT NULL DEFAULT 0 CHECK (node_binding IN (0, 1));
ALTER TABLE clusters ADD COLUMN token_review_url TEXT;
ALTER TABLE clusters ADD COLUMN token_review_ca TEXT;
ALTER TABLE clusters ADD COLUMN token_review_token TEXT;

ALTER TABLE audit_events ADD COLUMN node_name TEXT;
ALTER TABLE audit_events ADD COLUMN caller_node TEXT;

-- One row per association or cluster write, in the write's own transaction;
-- position is the feed position (commit order; AUTOINCREMENT never reuses one).
-- No foreign key: a cluster's 'cluster-delete' outlives the cluster.
CREATE TABLE association_changes (
    position        INTEGER PRIMARY KEY AUTOINCREMENT,
    cluster         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    association_id  TEXT,
    namespace       TEXT,
    service_account TEXT,
    time            INTEGER NOT NULL
) STRICT;

CREATE INDEX association_changes_cluster ON association_changes (cluster, position);
CREATE INDEX association_changes_time ON association_changes (time);

-- The highest position pruned: a follower behind it must start over.
CREATE TABLE association_changes_pruned (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL
) STRICT;

INSERT INTO association_changes_pruned (id, position) VALUES (1, 0);
