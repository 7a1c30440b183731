-- Berth metadata, version 9: replication runs of every core, so every core's admin API shows
-- the same history, and a rule's schedule (the cluster's) starts a run only when none started
-- within its interval on any core.
-- started_at: Unix milliseconds; trigger: manual, schedule or push; report: the run's JSON.
CREATE TABLE replication_runs (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    core TEXT NOT NULL,
    trigger TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX replication_runs_by_rule ON replication_runs (rule, started_at);
