-- Initial schema: settings, signing keys and the change feed.
-- Times are Unix milliseconds; 0 means "not set".

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE signing_keys (
    id           TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    public_key   BLOB NOT NULL,
    private_key  BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retires_at   INTEGER NOT NULL DEFAULT 0,
    expires_at   INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE INDEX signing_keys_algorithm_activates ON signing_keys (algorithm, activates_at);

-- AUTOINCREMENT: sequence numbers are never reused, even after pruning.
CREATE TABLE changes (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    ref  TEXT NOT NULL DEFAULT '',
    at   INTEGER NOT NULL
) STRICT;

CREATE INDEX changes_at ON changes (at);
