-- API keys (issue 4) and the audit log the whole product writes to.
-- Times are Unix milliseconds; 0 means "not set".

-- A key is stored only as its keyed hash; id, prefix, env and last4 are
-- public parts of the key. Keys of one rotation chain share a family (the
-- ID of the chain's first key). scopes and allowed_ips are space-separated.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    prefix       TEXT NOT NULL,
    env          TEXT NOT NULL,
    last4        TEXT NOT NULL,
    hash         BYTEA NOT NULL,
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL DEFAULT '',
    scopes       TEXT NOT NULL DEFAULT '',
    allowed_ips  TEXT NOT NULL DEFAULT '',
    rate_limit   BIGINT NOT NULL DEFAULT 0,
    rate_window  BIGINT NOT NULL DEFAULT 0,
    family       TEXT NOT NULL,
    replaced_by  TEXT NOT NULL DEFAULT '',
    grace_until  BIGINT NOT NULL DEFAULT 0,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT NOT NULL DEFAULT 0,
    last_used_at BIGINT NOT NULL DEFAULT 0,
    use_count    BIGINT NOT NULL DEFAULT 0,
    exposed_at   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX api_keys_owner ON api_keys (owner, id);
CREATE INDEX api_keys_family ON api_keys (family);

-- One row per security-relevant event, for every part of Gatehouse.
-- details is a JSON object. Never holds a secret.
CREATE TABLE audit_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL DEFAULT '',
    event     TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    outcome   TEXT NOT NULL DEFAULT '',
    reason    TEXT NOT NULL DEFAULT '',
    source_ip TEXT NOT NULL DEFAULT '',
    details   JSONB NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_target ON audit_events (target, id);
