-- Token exchange (RFC 8693) policy per client: the audiences a client may
-- exchange tokens for (a JSON array of strings; empty = none) and whether it
-- may impersonate (issue tokens without adding itself to the "act" chain).

ALTER TABLE clients ADD COLUMN exchange_audiences TEXT NOT NULL DEFAULT '[]';
ALTER TABLE clients ADD COLUMN may_impersonate INTEGER NOT NULL DEFAULT 0;
