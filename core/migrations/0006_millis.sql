-- Berth metadata, version 6: the times the collector compares are Unix milliseconds, so a
-- grace period or an undo window is what it says to the millisecond, not up to a second
-- longer (blobs.touched_at, blob_links.linked_at and manifests.deleted_at were Unix seconds).
-- Every core on one database must run a release with this migration: an older one would
-- write seconds, which read as 1970 here (releases from this one on refuse a newer schema).
UPDATE blobs SET touched_at = touched_at * 1000;
UPDATE blob_links SET linked_at = linked_at * 1000;
UPDATE manifests SET deleted_at = deleted_at * 1000 WHERE deleted_at IS NOT NULL;
