-- podid's initial schema (PostgreSQL). Times are epoch milliseconds; tags and
-- JWKS documents are JSON text.
CREATE TABLE clusters (
    name        TEXT   NOT NULL PRIMARY KEY,
    issuer      TEXT   NOT NULL,
    audience    TEXT   NOT NULL,
    cluster_arn TEXT   NOT NULL,
    key_source  TEXT   NOT NULL,
    jwks_uri    TEXT,
    jwks        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    modified_at BIGINT NOT NULL
);

-- seq is the list order and the pagination position.
CREATE TABLE associations (
    seq                  BIGSERIAL PRIMARY KEY,
    id                   TEXT    NOT NULL UNIQUE,
    cluster              TEXT    NOT NULL REFERENCES clusters (name),
    namespace            TEXT    NOT NULL,
    service_account      TEXT    NOT NULL,
    role_arn             TEXT    NOT NULL,
    target_role_arn      TEXT,
    external_id          TEXT    NOT NULL,
    disable_session_tags BOOLEAN NOT NULL,
    policy               TEXT,
    tags                 TEXT    NOT NULL DEFAULT '{}',
    created_at           BIGINT  NOT NULL,
    modified_at          BIGINT  NOT NULL,
    UNIQUE (cluster, namespace, service_account)
);

CREATE INDEX associations_cluster_seq ON associations (cluster, seq);

CREATE TABLE idempotency_tokens (
    cluster        TEXT   NOT NULL REFERENCES clusters (name),
    token          TEXT   NOT NULL,
    operation      TEXT   NOT NULL,
    request_digest TEXT   NOT NULL,
    association_id TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    PRIMARY KEY (cluster, token)
);

CREATE INDEX idempotency_tokens_association ON idempotency_tokens (cluster, association_id);
