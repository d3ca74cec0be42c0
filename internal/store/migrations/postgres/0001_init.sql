-- Initial schema: settings, signing keys and the change feed.
-- Times are Unix milliseconds; 0 means "not set".

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE signing_keys (
    id           TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    public_key   BYTEA NOT NULL,
    private_key  BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL,
    retires_at   BIGINT NOT NULL DEFAULT 0,
    expires_at   BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX signing_keys_algorithm_activates ON signing_keys (algorithm, activates_at);

-- Writers take an advisory lock before inserting, so sequence order is
-- commit order and a follower never skips a late-committing row.
CREATE TABLE changes (
    seq  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    ref  TEXT NOT NULL DEFAULT '',
    at   BIGINT NOT NULL
);

CREATE INDEX changes_at ON changes (at);

-- Wake followers (LISTEN gatehouse_changes) when a change commits. The
-- payload is empty, so PostgreSQL folds the notifications of one
-- transaction into one; followers read the rows themselves.
CREATE FUNCTION gatehouse_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('gatehouse_changes', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER changes_notify AFTER INSERT ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_notify_change();
