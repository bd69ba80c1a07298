-- Created by tiering only when this table is absent (a fresh or demo database); on a real
-- Hammerwork database it already exists and is left exactly as it is. Shape: Hammerwork v1.15.
CREATE TABLE IF NOT EXISTS hammerwork_jobs (
    id UUID PRIMARY KEY,
    queue_name VARCHAR(255) NOT NULL,
    payload JSONB NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'Pending',
    priority INTEGER NOT NULL DEFAULT 2,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL DEFAULT 3,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    scheduled_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    started_at TIMESTAMPTZ,
    completed_at TIMESTAMPTZ,
    failed_at TIMESTAMPTZ,
    timed_out_at TIMESTAMPTZ,
    error_message TEXT,
    timeout_seconds INTEGER,
    cron_schedule VARCHAR(100),
    next_run_at TIMESTAMPTZ,
    recurring BOOLEAN NOT NULL DEFAULT FALSE,
    timezone VARCHAR(50),
    batch_id UUID,
    result_data JSONB,
    result_stored_at TIMESTAMPTZ,
    result_expires_at TIMESTAMPTZ,
    dependency_status VARCHAR(20) DEFAULT 'none',
    workflow_id UUID,
    workflow_name VARCHAR(255),
    result_storage_type VARCHAR(20) DEFAULT 'database',
    result_ttl_seconds BIGINT,
    result_max_size_bytes BIGINT,
    trace_id VARCHAR(128),
    correlation_id VARCHAR(128),
    parent_span_id VARCHAR(128),
    span_context TEXT,
    archived_at TIMESTAMPTZ,
    archival_reason VARCHAR(50),
    archival_policy_applied VARCHAR(255),
    is_encrypted BOOLEAN NOT NULL DEFAULT FALSE,
    encryption_key_id VARCHAR(255),
    encryption_algorithm VARCHAR(50),
    encrypted_payload BYTEA,
    encryption_nonce BYTEA,
    encryption_tag BYTEA,
    encryption_metadata JSONB,
    payload_hash VARCHAR(255),
    pii_fields TEXT[],
    retention_policy VARCHAR(50),
    retention_delete_at TIMESTAMPTZ,
    encrypted_at TIMESTAMPTZ,
    depends_on UUID[] DEFAULT '{}',
    dependents UUID[] DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS idx_hammerwork_jobs_queue_status_priority_scheduled
    ON hammerwork_jobs (queue_name, status, priority DESC, scheduled_at ASC);
CREATE INDEX IF NOT EXISTS idx_hammerwork_jobs_archival_completed
    ON hammerwork_jobs (completed_at) WHERE status = 'Completed' AND archived_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_hammerwork_jobs_archival_failed
    ON hammerwork_jobs (failed_at) WHERE status = 'Failed' AND archived_at IS NULL;
CREATE INDEX IF NOT EXISTS idx_hammerwork_jobs_archival_dead
    ON hammerwork_jobs (failed_at) WHERE status = 'Dead' AND archived_at IS NULL;

