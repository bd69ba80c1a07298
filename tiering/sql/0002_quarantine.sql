-- Staged jobs whose stored payload cannot be decoded (corrupt gzip/zstd, invalid UTF-8). A flush leaves them
-- in staging, records them here and goes on with the rest; later flushes skip them until an operator repairs
-- or erases the row and deletes the quarantine entry.
CREATE TABLE tiering_quarantine (
    job_id UUID PRIMARY KEY,
    queue_name TEXT,
    reason TEXT NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    flush_operation_id BIGINT
);
