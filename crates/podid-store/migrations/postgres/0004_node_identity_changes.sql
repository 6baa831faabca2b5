-- Issue 14: how a cluster's agents authenticate, node binding, the API server
-- asked with TokenReview (its token is a credential: never shown), the nodes an
-- audit event names, and the change feed of a cluster's associations.
ALTER TABLE clusters ADD COLUMN agent_identity TEXT NOT NULL DEFAULT 'key';
ALTER TABLE clusters ADD COLUMN agent_service_account TEXT NOT NULL DEFAULT 'podid-system/podid-agent';
ALTER TABLE clusters ADD COLUMN node_binding BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE clusters ADD COLUMN token_review_url TEXT;
ALTER TABLE clusters ADD COLUMN token_review_ca TEXT;
ALTER TABLE clusters ADD COLUMN token_review_token TEXT;

ALTER TABLE audit_events ADD COLUMN node_name TEXT;
ALTER TABLE audit_events ADD COLUMN caller_node TEXT;

-- One row per association or cluster write, in the write's own transaction;
-- position is the feed position (commit order: writers take an advisory lock
-- before inserting). No foreign key: a 'cluster-delete' outlives the cluster.
CREATE TABLE association_changes (
    position        BIGSERIAL PRIMARY KEY,
    cluster         TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    association_id  TEXT,
    namespace       TEXT,
    service_account TEXT,
    time            BIGINT NOT NULL
);

CREATE INDEX association_changes_cluster ON association_changes (cluster, position);
CREATE INDEX association_changes_time ON association_changes (time);

-- The highest position pruned: a follower behind it must start over.
CREATE TABLE association_changes_pruned (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position BIGINT  NOT NULL
);

INSERT INTO association_changes_pruned (id, position) VALUES (1, 0);
