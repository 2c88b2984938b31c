-- Issue 12 (numbered 0012 so it never collides with migrations other branches add meanwhile).
-- A conversation started without a title is named after its first question (title_auto);
-- naming it by hand ends that.
ALTER TABLE conversations ADD COLUMN title_auto boolean NOT NULL DEFAULT false;
-- An answer given while some of its documents were still being read records how far each was
-- read: [{"upload_id", "upload_name", "pages_done", "pages_total"}].
ALTER TABLE messages ADD COLUMN reading jsonb NOT NULL DEFAULT '[]';
