-- The job list (CLI, API, dashboard) shows why a job failed without reading its object: the first 500
-- characters of error_message, copied into the job index by the flush that writes the job's object.
ALTER TABLE tiering_job_index ADD COLUMN IF NOT EXISTS error_message TEXT;
