-- The authorization server's side of the gateway (issue 5) and per-client
-- token-endpoint rate limits (issue 6).
--
-- access_token_format: "" or "jwt" (signed JWT access tokens) or "opaque"
-- (random strings resolved by introspection). gateway: the client may
-- exchange any Gatehouse credential for an internal "phantom" JWT.
-- rate_limit requests per rate_window milliseconds at the token endpoint
-- (0 = no limit).
ALTER TABLE clients ADD COLUMN access_token_format TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN gateway INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN rate_limit INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clients ADD COLUMN rate_window BIGINT NOT NULL DEFAULT 0;

-- Opaque access tokens, stored only as their keyed hash with the claims a
-- JWT would carry (a JSON object). family_id is the refresh family the
-- token was issued in ('' if none); revoked_at is 0 while live. Rows go
-- once they expire.
CREATE TABLE opaque_tokens (
    hash       BYTEA PRIMARY KEY,
    jti        TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    family_id  TEXT NOT NULL DEFAULT '',
    claims     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX opaque_tokens_expires_at ON opaque_tokens (expires_at);
CREATE INDEX opaque_tokens_family ON opaque_tokens (family_id) WHERE family_id <> '';
