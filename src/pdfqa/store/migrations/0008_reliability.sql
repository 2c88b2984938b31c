-- The deployment's own id (scopes its queue names and job ids on a shared Redis), and each
-- upload's ingestion bookkeeping: attempts made and the checkpoint a resumed job starts from.
CREATE TABLE deployment (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    singleton  boolean NOT NULL DEFAULT true UNIQUE CHECK (singleton),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO deployment DEFAULT VALUES;

CREATE TABLE upload_jobs (
    upload_id  uuid PRIMARY KEY REFERENCES uploads (id) ON DELETE CASCADE,
    attempts   integer NOT NULL DEFAULT 0,
    checkpoint bytea,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX uploads_unfinished_idx ON uploads (updated_at)
    WHERE status IN ('queued', 'processing');
