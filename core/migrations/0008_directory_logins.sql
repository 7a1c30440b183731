-- Berth metadata, version 8: users of a directory (LDAP) who logged in, with the roles their
-- groups gave them then, so the admin API and the UI of every core can show who they are and
-- where they come from. Not settings: nothing here grants anything (a login re-reads the
-- directory); it is a record. login_at: Unix milliseconds (written at most once a minute per
-- user and core, or at once when the roles changed).
CREATE TABLE directory_logins (
    username TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    roles TEXT NOT NULL,
    login_at BIGINT NOT NULL,
    login_from TEXT NOT NULL
);

-- And web UI sessions of directory users: the roles of the login they were opened with
-- (NULL for a local user's session, whose roles are read from the users in force).
ALTER TABLE sessions ADD COLUMN roles TEXT;
