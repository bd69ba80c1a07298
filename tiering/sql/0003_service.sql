-- tiering serve / tiering schedule: scheduled windows and API background tasks.

-- One row per (task, cron window) that some scheduler instance claimed. The primary key makes a
-- window run at most once however many schedulers are running; a scheduler that was down for
-- several windows claims only the latest one (a missed window runs once, not many times).
CREATE TABLE tiering_schedule_runs (
    task TEXT NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    cron TEXT NOT NULL,
    instance TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ,
    outcome TEXT NOT NULL DEFAULT 'running',   -- running | succeeded | failed | skipped
    result JSONB NOT NULL DEFAULT '{}'::jsonb,
    error TEXT,
    PRIMARY KEY (task, window_start)
);
CREATE INDEX tiering_schedule_runs_started_idx ON tiering_schedule_runs (task, started_at DESC);

-- Long API requests (POST /api/archive/run, bulk restore) run in the background; their progress
-- is polled at GET /api/archive/operations/{id} from any instance.
CREATE TABLE tiering_service_tasks (
    id UUID PRIMARY KEY,
    kind TEXT NOT NULL,
    request JSONB NOT NULL DEFAULT '{}'::jsonb,
    state TEXT NOT NULL DEFAULT 'running',      -- running | succeeded | failed
    progress JSONB NOT NULL DEFAULT '{}'::jsonb,
    result JSONB,
    error TEXT,
    error_status INTEGER,
    instance TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    finished_at TIMESTAMPTZ
);
CREATE INDEX tiering_service_tasks_started_idx ON tiering_service_tasks (started_at DESC);
