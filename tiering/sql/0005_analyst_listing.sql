-- Stores whose analysts' listing (_tiering/analyst/ beside the objects) tiering keeps current: the first
-- `tiering analyst` command writes it; flushes, restores, purges and erases then rewrite it. Looked up in the
-- database so that steps on a store nobody analyses make no extra object request.
CREATE TABLE IF NOT EXISTS tiering_analyst_listing (
    store_uri TEXT PRIMARY KEY,
    published_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
