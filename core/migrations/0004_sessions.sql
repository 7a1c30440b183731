-- Berth metadata, version 4: web UI sessions, kept here so that logging out, a password
-- change or deleting the user ends them on every core at once.
-- id: hex SHA-256 of the cookie's secret (the secret itself is never stored);
-- stamp: a fingerprint of the user's password hash when the session began (a password
-- changed by any route, the config file included, ends it); times: Unix milliseconds.
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    stamp TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE INDEX sessions_by_user ON sessions (username);
