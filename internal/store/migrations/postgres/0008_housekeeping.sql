-- Housekeeping deletes expired rows in batches (store.Housekeep). Without
-- an index on what it selects by, each batch scanned the whole table while
-- holding the SQLite write lock, so writers waited in proportion to the
-- live rows, not the expired ones (200,000 live refresh families: 250 ms
-- per run).
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);
CREATE INDEX family_access_tokens_expires ON family_access_tokens (expires_at);

-- A refresh family may go once nothing in it is left. expires_at is when
-- its last refresh token or access token expires (Unix ms; an upper bound
-- kept by every insert into the family), so housekeeping looks only at
-- families that can be empty and still checks that they are.
ALTER TABLE refresh_families ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0;
UPDATE refresh_families SET expires_at = GREATEST(
    COALESCE((SELECT max(t.expires_at) FROM refresh_tokens t WHERE t.family_id = refresh_families.id), 0),
    COALESCE((SELECT max(a.expires_at) FROM family_access_tokens a WHERE a.family_id = refresh_families.id), 0));
CREATE INDEX refresh_families_expires ON refresh_families (expires_at);
