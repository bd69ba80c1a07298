-- tiering's own tables. Tracked in tiering_schema_migrations, never in hammerwork_migrations.

-- The stored archival policy (one row per name; 'default' is what `archive run` uses).
CREATE TABLE tiering_policies (
    name TEXT PRIMARY KEY,
    policy JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_by TEXT
);

-- Audit trail: one row per archive, flush, restore, purge, erase, policy change, lifecycle apply.
CREATE TABLE tiering_operations (
    id BIGSERIAL PRIMARY KEY,
    operation TEXT NOT NULL,
    initiated_by TEXT,
    reason TEXT,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    finished_at TIMESTAMPTZ,
    parameters JSONB NOT NULL DEFAULT '{}'::jsonb,
    counts JSONB NOT NULL DEFAULT '{}'::jsonb,
    outcome TEXT NOT NULL DEFAULT 'running',   -- running | succeeded | failed
    error TEXT
);
CREATE INDEX tiering_operations_started_idx ON tiering_operations (started_at DESC);
CREATE INDEX tiering_operations_operation_idx ON tiering_operations (operation, started_at DESC);

-- One row per object in the cold tier. Created 'pending' before the upload; 'committed' in the
-- same transaction that writes the job index and deletes the staged rows; 'purged' once gone.
CREATE TABLE tiering_manifest (
    id BIGSERIAL PRIMARY KEY,
    flush_id UUID NOT NULL,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    queue_name TEXT NOT NULL,
    queue_slug TEXT NOT NULL,
    partition_date DATE NOT NULL,
    row_count BIGINT NOT NULL DEFAULT 0,
    row_groups INTEGER NOT NULL DEFAULT 0,
    bytes BIGINT NOT NULL DEFAULT 0,
    uncompressed_bytes BIGINT NOT NULL DEFAULT 0,
    payload_original_bytes BIGINT NOT NULL DEFAULT 0,
    min_created_at TIMESTAMPTZ,
    max_created_at TIMESTAMPTZ,
    min_archived_at TIMESTAMPTZ,
    max_archived_at TIMESTAMPTZ,
    statuses TEXT[] NOT NULL DEFAULT '{}',
    storage_class TEXT NOT NULL DEFAULT 'STANDARD',
    checksum_sha256 TEXT,
    etag TEXT,
    encryption TEXT,
    kms_key_id TEXT,
    schema_version INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'committed', 'purged')),
    replaces_id BIGINT REFERENCES tiering_manifest (id),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    committed_at TIMESTAMPTZ,
    purged_at TIMESTAMPTZ,
    restore_requested_at TIMESTAMPTZ,
    UNIQUE (bucket, key)
);
CREATE INDEX tiering_manifest_state_idx ON tiering_manifest (state, created_at);
CREATE INDEX tiering_manifest_queue_date_idx ON tiering_manifest (queue_name, partition_date)
    WHERE state = 'committed';

-- job id -> the object (and row group) holding it, plus the fields list/stats need, so a job is
-- found without listing or scanning objects. restored_at marks a job that went back to the hot
-- table: it leaves the archive's view; a later archive of the same job gets a new row.
CREATE TABLE tiering_job_index (
    job_id UUID NOT NULL,
    object_id BIGINT NOT NULL REFERENCES tiering_manifest (id),
    row_group INTEGER NOT NULL,
    row_in_group INTEGER NOT NULL,
    queue_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    archived_at TIMESTAMPTZ NOT NULL,
    payload_bytes INTEGER NOT NULL DEFAULT 0,
    restored_at TIMESTAMPTZ
);
-- Kept to the three indexes the readers need: a flush inserts one row per job, so every index costs.
CREATE UNIQUE INDEX tiering_job_index_live_job_idx ON tiering_job_index (job_id) WHERE restored_at IS NULL;
-- An object's jobs and the job at a position (cold search maps matched rows to jobs with it). A flush inserts
-- in (object, row group, row) order, so this index grows at its right edge.
CREATE INDEX tiering_job_index_object_idx ON tiering_job_index (object_id, row_group, row_in_group);
CREATE INDEX tiering_job_index_list_idx ON tiering_job_index (archived_at DESC, job_id) WHERE restored_at IS NULL;
