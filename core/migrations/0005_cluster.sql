-- Berth metadata, version 5: what several cores on one database share so that any of them
-- can answer any request: the key registry tokens are signed with, the lease that lets one
-- collector run at a time, and the reports of every core's collections.

-- The signing key of registry tokens: slot `current` signs, slot `previous` (the key before
-- the last rotation) is still accepted until one token lifetime after retired_at.
-- kid: a fingerprint that names the key (never the secret); secret: hex, or NULL when the
-- key lives in a file every core reads (`auth.token_key_file`), where only the fingerprint is
-- kept to refuse a core with another file. Times: Unix milliseconds.
CREATE TABLE signing_keys (
    slot TEXT PRIMARY KEY,
    kid TEXT NOT NULL,
    secret TEXT,
    created_at BIGINT NOT NULL,
    retired_at BIGINT
);

-- Named leases: one holder at a time until expires_at (Unix milliseconds); a holder that
-- dies loses it when it expires.
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Garbage-collection runs of every core: the report as JSON, the core that ran it, whether
-- the schedule started it. started_at: Unix seconds.
CREATE TABLE gc_runs (
    id TEXT PRIMARY KEY,
    core TEXT NOT NULL,
    scheduled INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    report TEXT NOT NULL
);
CREATE INDEX gc_runs_started ON gc_runs (started_at);
