-- podid's initial schema (SQLite). Times are epoch milliseconds; tags and
-- JWKS documents are JSON text.
CREATE TABLE clusters (
    name        TEXT    NOT NULL PRIMARY KEY,
    issuer      TEXT    NOT NULL,
    audience    TEXT    NOT NULL,
    cluster_arn TEXT    NOT NULL,
    key_source  TEXT    NOT NULL,
    jwks_uri    TEXT,
    jwks        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    modified_at INTEGER NOT NULL
) STRICT;

-- seq is the list order and the pagination position; AUTOINCREMENT keeps it
-- from reusing the positions of deleted rows.
CREATE TABLE associations (
    seq                  INTEGER PRIMARY KEY AUTOINCREMENT,
    id                   TEXT    NOT NULL UNIQUE,
    cluster              TEXT    NOT NULL REFERENCES clusters (name),
    namespace            TEXT    NOT NULL,
    service_account      TEXT    NOT NULL,
    role_arn             TEXT    NOT NULL,
    target_role_arn      TEXT,
    external_id          TEXT    NOT NULL,
    disable_session_tags INTEGER NOT NULL CHECK (disable_session_tags IN (0, 1)),
    policy               TEXT,
    tags                 TEXT    NOT NULL DEFAULT '{}',
    created_at           INTEGER NOT NULL,
    modified_at          INTEGER NOT NULL,
    UNIQUE (cluster, namespace, service_account)
) STRICT;

CREATE INDEX associations_cluster_seq ON associations (cluster, seq);

CREATE TABLE idempotency_tokens (
    cluster        TEXT    NOT NULL REFERENCES clusters (name),
    token          TEXT    NOT NULL,
    operation      TEXT    NOT NULL,
    request_digest TEXT    NOT NULL,
    association_id TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (cluster, token)
) STRICT;

CREATE INDEX idempotency_tokens_association ON idempotency_tokens (cluster, association_id);
