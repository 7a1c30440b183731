-- Berth metadata, version 2: what the life-cycle needs (garbage collection, undo, usage).
-- The same SQL text runs on SQLite and PostgreSQL.

-- Every blob and manifest the BlobStore holds or is about to hold. A row is written before
-- the bytes are placed and touched whenever content is linked; the collector deletes a row
-- and its bytes together, inside one transaction, and only rows untouched for the grace
-- period: a push in flight is never left pointing at bytes that are gone.
-- size: bytes (NULL until known); stored: 1 once the bytes are durably placed;
-- touched_at: Unix seconds.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT,
    stored INTEGER NOT NULL,
    touched_at BIGINT NOT NULL
);
CREATE INDEX blobs_touched ON blobs (touched_at);

-- What version 1 knew of: linked blobs and manifests (blob sizes and unlinked files are
-- adopted at start from the BlobStore, see berth_state).
INSERT INTO blobs (digest, size, stored, touched_at)
    SELECT digest, MAX(size), 1, MAX(t) FROM (
        SELECT digest, NULL AS size, linked_at AS t FROM blob_links
        UNION ALL
        SELECT digest, size, pushed_at AS t FROM manifests
    ) known GROUP BY digest;

-- A deleted manifest stays, restorable, until the undo window has passed (Unix seconds).
ALTER TABLE manifests ADD COLUMN deleted_at BIGINT;
CREATE INDEX manifests_deleted ON manifests (deleted_at);

-- Tag history: every change of what a tag points at. digest NULL: the tag was removed;
-- previous NULL: it was new. at: Unix milliseconds.
CREATE TABLE tag_events (
    repo TEXT NOT NULL,
    image TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT,
    previous TEXT,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX tag_events_tag ON tag_events (repo, image, tag, at);
CREATE INDEX tag_events_at ON tag_events (at);

-- One-time work after a migration: `blobs_adopted` is 1 once every file the BlobStore held
-- when version 2 arrived has a row with its size (version 1 left unlinked bytes behind).
CREATE TABLE berth_state (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO berth_state (name, value) VALUES ('blobs_adopted', '0');
