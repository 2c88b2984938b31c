-- Issue 9 (numbered 0009 so it never collides with migrations other branches add meanwhile).
-- Sessions end after an idle period as well as at their expiry; expired rows are purged.
ALTER TABLE sessions ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
