-- Page-level OCR. The ingestion hands the pages that need OCR to an OCR job through
-- ocr_handoffs (PostgreSQL is the truth: a dead worker loses nothing, the reconciler queues the
-- OCR job again); each recognised line is kept with its box for the viewer's highlights.
ALTER TABLE uploads ADD COLUMN pages_ocr integer NOT NULL DEFAULT 0;
ALTER TABLE upload_jobs ADD COLUMN ocr_attempts integer NOT NULL DEFAULT 0;

CREATE TABLE ocr_handoffs (
    upload_id  uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    page       integer NOT NULL CHECK (page > 0),
    status     text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'skipped')),
    chunks     integer NOT NULL DEFAULT 0,
    error      text,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (upload_id, page)
);

-- Boxes are fractions of the page's width and height, from its top-left corner (the page as
-- shown, rotation applied), so any viewer scales them to its own rendering.
CREATE TABLE ocr_lines (
    upload_id uuid NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    page      integer NOT NULL,
    line      integer NOT NULL,
    text      text NOT NULL,
    x0        real NOT NULL,
    y0        real NOT NULL,
    x1        real NOT NULL,
    y1        real NOT NULL,
    score     real NOT NULL,
    PRIMARY KEY (upload_id, page, line)
);
