-- Issue 10 (numbered 0010 so it never collides with migrations other branches add meanwhile).
-- Admins: the first registered user, users an admin promotes (this flag), and users named in
-- PDFQA_ADMIN_EMAILS (checked at run time, so the setting works without touching rows).
ALTER TABLE users ADD COLUMN is_admin boolean NOT NULL DEFAULT false;
UPDATE users SET is_admin = true
    WHERE id = (SELECT id FROM users ORDER BY created_at, id LIMIT 1);
-- The jobs dashboard lists uploads by status without scanning the whole table.
CREATE INDEX uploads_status_updated_idx ON uploads (status, updated_at DESC);
