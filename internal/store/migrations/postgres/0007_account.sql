-- The account pages (issue 7): what a user sees about each of their
-- sessions. user_agent and ip are recorded at sign-in (bounded, shown only
-- to the user and operators); last_seen_at is refreshed at most every few
-- minutes while the session is used (0 = not since sign-in).

ALTER TABLE sessions ADD COLUMN user_agent TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN ip TEXT NOT NULL DEFAULT '';
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT NOT NULL DEFAULT 0;

-- The console's audit-log filters (newest first by actor or by event).
CREATE INDEX audit_events_actor ON audit_events (actor, id);
CREATE INDEX audit_events_event ON audit_events (event, id);
