-- Berth metadata, version 7: when and from which address each API token was last used, so
-- an owner can tell a token in use from a forgotten one before revoking it. Kept apart from
-- the token's setting: a use is not a change, and must not make every core reload its users.
-- used_at: Unix milliseconds (each core writes at most once a minute per token).
CREATE TABLE token_uses (
    id TEXT PRIMARY KEY,
    used_at BIGINT NOT NULL,
    used_from TEXT NOT NULL
);

-- And the last real cleanup run of each repository, whichever core ran it (the schedule runs
-- on the core holding the gc lease), so every core's admin API and UI show the same run.
-- at: Unix milliseconds; report: the run's JSON report.
CREATE TABLE cleanup_runs (
    repo TEXT PRIMARY KEY,
    core TEXT NOT NULL,
    at BIGINT NOT NULL,
    report TEXT NOT NULL
);
