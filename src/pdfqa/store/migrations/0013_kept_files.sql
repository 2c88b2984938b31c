-- Issue 10: a failed upload's file is kept for a while (PDFQA_FAILED_FILE_RETENTION_S), so an
-- admin can retry its ingestion from the jobs dashboard; the reconciler deletes it once expired.
-- A row here means "this failed upload's file is still stored, until expires_at".
CREATE TABLE kept_files (
    upload_id  uuid PRIMARY KEY REFERENCES uploads (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX kept_files_expiry_idx ON kept_files (expires_at);
