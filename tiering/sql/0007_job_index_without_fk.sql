-- The job index's rows no longer carry a foreign key to tiering_manifest: a flush inserts one index row per job,
-- and the key's per-row check (a FOR KEY SHARE lookup of the manifest row) cost the flush's commit about 0.3 s of
-- backend CPU per 100k jobs, a quarter of the index insert. The guarantee it gave holds without it: index rows
-- are written only in the transaction that turns their manifest rows from pending to committed, which counts
-- the rows it committed and rolls back on any difference (the flush's commit; a rewrite's swap), and that
-- UPDATE locks them; manifest rows are deleted only while pending (an abandoned upload), never once committed.
ALTER TABLE tiering_job_index DROP CONSTRAINT IF EXISTS tiering_job_index_object_id_fkey;
