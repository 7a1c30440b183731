-- Berth metadata, version 1. The same SQL text runs on SQLite and PostgreSQL.
-- Names and digests are grammar-checked text; times are Unix seconds.

-- A blob visible in an image (the blob's bytes live in the BlobStore).
CREATE TABLE blob_links (
    repo TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (repo, image, digest)
);
CREATE INDEX blob_links_digest ON blob_links (digest);

-- A manifest linked in an image, with what the referrers API and GC need to know of it.
CREATE TABLE manifests (
    repo TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    subject TEXT,
    artifact_type TEXT,
    annotations TEXT,
    pushed_at BIGINT NOT NULL,
    pulled_at BIGINT,
    PRIMARY KEY (repo, image, digest)
);
CREATE INDEX manifests_subject ON manifests (repo, image, subject);
CREATE INDEX manifests_digest ON manifests (digest);

-- What each manifest references (config, layers, child manifests): reachability for GC.
CREATE TABLE manifest_refs (
    repo TEXT NOT NULL,
    image TEXT NOT NULL,
    digest TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (repo, image, digest, target)
);
CREATE INDEX manifest_refs_target ON manifest_refs (target);

CREATE TABLE tags (
    repo TEXT NOT NULL,
    image TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo, image, tag)
);
CREATE INDEX tags_digest ON tags (repo, image, digest);

-- Upload sessions: any core can continue one (the data is in the BlobStore under its id).
-- created_at and updated_at here are Unix milliseconds (idle sessions give way at the cap).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repo TEXT NOT NULL,
    image TEXT NOT NULL,
    client TEXT NOT NULL,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_repo ON uploads (repo);
