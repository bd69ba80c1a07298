-- The jobs restored out of committed objects, found without scanning the job index: the Iceberg table (opt-in)
-- publishes them as position deletes on every reconcile (after each flush, purge, erase and restore). Restored
-- rows are few, and a flush's rows (restored_at NULL) are not entered, so the flush pays nothing for it.
CREATE INDEX IF NOT EXISTS tiering_job_index_restored_idx ON tiering_job_index (object_id)
    WHERE restored_at IS NOT NULL;
