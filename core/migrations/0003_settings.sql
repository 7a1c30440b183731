-- Berth metadata, version 3: settings changed at run time (the admin API and the UI).
-- The config file stays the bootstrap; a row here adds to it or overrides one of its entries,
-- and a row with a NULL body removes one (a config-file repository deleted at run time).
-- kind: `repository`, `user`, `role`, `token`; body: the entry as JSON, in the config
-- file's shape; updated_at: Unix milliseconds.
CREATE TABLE settings (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT,
    actor TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Bumped by every change, so several cores on one database notice each other's changes with
-- one cheap read.
INSERT INTO berth_state (name, value) VALUES ('settings_version', '0');
