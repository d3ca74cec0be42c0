-- OAuth clients, the access-token revocation list and used client
-- assertions. Lists are JSON arrays of strings; durations are milliseconds
-- (0 = the server default); times are Unix milliseconds (0 = not set).

CREATE TABLE clients (
    id                         TEXT PRIMARY KEY,
    name                       TEXT NOT NULL,
    secret_hash                BLOB NOT NULL DEFAULT x'',
    prev_secret_hash           BLOB NOT NULL DEFAULT x'',
    prev_secret_expires_at     INTEGER NOT NULL DEFAULT 0,
    public                     INTEGER NOT NULL DEFAULT 0,
    grant_types                TEXT NOT NULL DEFAULT '[]',
    scopes                     TEXT NOT NULL DEFAULT '[]',
    redirect_uris              TEXT NOT NULL DEFAULT '[]',
    audiences                  TEXT NOT NULL DEFAULT '[]',
    access_token_ttl           INTEGER NOT NULL DEFAULT 0,
    refresh_token_ttl          INTEGER NOT NULL DEFAULT 0,
    access_token_alg           TEXT NOT NULL DEFAULT '',
    id_token_alg               TEXT NOT NULL DEFAULT '',
    jwks                       BLOB NOT NULL DEFAULT x'',
    jwks_uri                   TEXT NOT NULL DEFAULT '',
    token_endpoint_auth_method TEXT NOT NULL DEFAULT '',
    registration_token_hash    BLOB NOT NULL DEFAULT x'',
    created_at                 INTEGER NOT NULL,
    updated_at                 INTEGER NOT NULL
) STRICT;

-- Revoked JWT access tokens, by "jti", kept until the token expires.
CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
) STRICT;

CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);

-- "jti" values of private_key_jwt client assertions already used (RFC 7523
-- section 3, item 7), kept until the assertion expires.
CREATE TABLE used_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
) STRICT;

CREATE INDEX used_assertions_expires_at ON used_assertions (expires_at);
