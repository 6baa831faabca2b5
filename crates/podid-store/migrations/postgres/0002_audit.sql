-- Audit events of the credential broker, one per decision. No secrets.
CREATE TABLE audit_events (
    seq             BIGSERIAL PRIMARY KEY,
    time            BIGINT NOT NULL,
    request_id      TEXT   NOT NULL,
    caller          TEXT   NOT NULL,
    cluster         TEXT   NOT NULL,
    namespace       TEXT,
    service_account TEXT,
    pod_name        TEXT,
    pod_uid         TEXT,
    association_id  TEXT,
    role_arn        TEXT,
    outcome         TEXT   NOT NULL,
    error_code      TEXT
);

CREATE INDEX audit_events_time ON audit_events (time);
CREATE INDEX audit_events_cluster ON audit_events (cluster, seq);
