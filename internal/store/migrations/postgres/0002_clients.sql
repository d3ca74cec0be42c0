-- OAuth clients, the access-token revocation list and used client
-- assertions. Lists are JSON arrays of strings; durations are milliseconds
-- (0 = the server default); times are Unix milliseconds (0 = not set).

CREATE TABLE clients (
    id                         TEXT PRIMARY KEY,
    name                       TEXT NOT NULL,
    secret_hash                BYTEA NOT NULL DEFAULT '',
    prev_secret_hash           BYTEA NOT NULL DEFAULT '',
    prev_secret_expires_at     BIGINT NOT NULL DEFAULT 0,
    public                     INTEGER NOT NULL DEFAULT 0,
    grant_types                TEXT NOT NULL DEFAULT '[]',
    scopes                     TEXT NOT NULL DEFAULT '[]',
    redirect_uris              TEXT NOT NULL DEFAULT '[]',
    audiences                  TEXT NOT NULL DEFAULT '[]',
    access_token_ttl           BIGINT NOT NULL DEFAULT 0,
    refresh_token_ttl          BIGINT NOT NULL DEFAULT 0,
    access_token_alg           TEXT NOT NULL DEFAULT '',
    id_token_alg               TEXT NOT NULL DEFAULT '',
    jwks                       BYTEA NOT NULL DEFAULT '',
    jwks_uri                   TEXT NOT NULL DEFAULT '',
    token_endpoint_auth_method TEXT NOT NULL DEFAULT '',
    registration_token_hash    BYTEA NOT NULL DEFAULT '',
    created_at                 BIGINT NOT NULL,
    updated_at                 BIGINT NOT NULL
);

-- Revoked JWT access tokens, by "jti", kept until the token expires.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- "jti" values of private_key_jwt client assertions already used (RFC 7523
-- section 3, item 7), kept until the assertion expires.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (client_id, jti)
);

CREATE INDEX used_assertions_expires_at ON used_assertions (expires_at);
