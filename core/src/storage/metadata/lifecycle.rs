//! The life-cycle half of the metadata contract: what garbage collection, undo, cleanup
//! policies and usage need from the store. Every decision about reachability is a query here,
//! never a walk of the BlobStore.
//!
//! # Why the collector is safe while pushes go on
//! Content moves through the store in an order the collector respects:
//! 1. a `blobs` row is written ([`super::MetadataStore::blob_intent`]) *before* bytes are
//!    placed, and touched whenever the blob is linked or named by a pushed manifest;
//! 2. a push's transaction touches the links of every blob its manifest names and re-checks
//!    they exist;
//! 3. the collector only takes rows untouched for the grace period, re-checks that age in the
//!    statement that deletes them (so on PostgreSQL a concurrent touch wins, on SQLite writers
//!    are serialised anyway), and deletes a blob's bytes while its transaction still holds the
//!    row ([`BlobClaim`]): a push that needs the same digest waits for the claim and then
//!    writes a fresh row and fresh bytes.
//!
//! Deleted manifests stay (with `deleted_at`) until the undo window has passed; only then does
//! the collector remove them, and their blobs' links only after that.

use async_trait::async_trait;

use super::{Actor, Result};
use crate::oci::{Digest, RepoName, Tag};
use crate::storage::Namespace;

/// One change of a tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TagEvent {
    pub image: String,
    pub tag: String,
    /// What it points at afterwards; `None`: it was removed.
    pub digest: Option<String>,
    /// What it pointed at before; `None`: it was new.
    pub previous: Option<String>,
    pub actor: String,
    pub reason: String,
    /// Unix milliseconds.
    pub at: i64,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The manifest is live again (with the referrers deleted with it), and the tag, if one
    /// was given, points at it.
    Done {
        digest: Digest,
        /// Manifests brought back from the trash (0 if it was only the tag).
        manifests: u64,
        /// Tags now pointing at it again.
        tags: Vec<String>,
    },
    /// The tag has no history to restore from.
    NoHistory,
    /// The manifest is gone: the collector removed it after the undo window.
    Collected(Digest),
}

/// A repository's storage use. A blob shared by several images counts once.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Bytes of the distinct blobs and manifests the repository holds (deleted manifests
    /// included until collected: they still hold their bytes).
    pub bytes: u64,
    /// Distinct blobs and manifests by digest.
    pub blobs: u64,
    /// Manifests not deleted.
    pub manifests: u64,
    pub tags: u64,
    /// Deleted manifests the undo window still keeps.
    pub deleted_manifests: u64,
    /// Images with at least one manifest not deleted.
    pub images: u64,
    /// Unix seconds of the newest push, if any.
    pub last_pushed_at: Option<i64>,
}

/// A tag as cleanup policies judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    pub tag: String,
    pub digest: Digest,
    /// When the tag last moved here (Unix seconds).
    pub pushed_at: i64,
    /// When its manifest was last pulled, if ever (Unix seconds).
    pub pulled_at: Option<i64>,
}

/// A live manifest as cleanup policies and cache eviction judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestAge {
    pub digest: Digest,
    pub size: u64,
    pub pushed_at: i64,
    pub pulled_at: Option<i64>,
    pub tagged: bool,
    /// Named by another live manifest of the image (an index's child).
    pub child: bool,
    /// A referrer (its subject decides its fate).
    pub subject: Option<Digest>,
}

impl ManifestAge {
    /// When it was last used: pulled, or else pushed.
    pub fn last_used(&self) -> i64 {
        self.pulled_at.unwrap_or(self.pushed_at).max(self.pushed_at)
    }
}

/// Cut-off times for a collection (Unix milliseconds): content older than them may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    /// Deleted manifests deleted before this are removed.
    pub deleted_before: i64,
    /// Links and blob records untouched since before this may be removed.
    pub touched_before: i64,
}

/// What a collection with these cut-offs would remove now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Preview {
    /// Deleted manifests past the undo window: `repo/image@digest`.
    pub manifests: Vec<String>,
    /// Blob links no manifest names: `repo/image@digest`.
    pub links: Vec<String>,
    /// Blobs nothing would reach any more, with their sizes.
    pub blobs: Vec<(String, u64)>,
    /// Whether the lists were cut at the limit (the totals are not).
    pub truncated: bool,
    pub manifest_count: u64,
    pub link_count: u64,
    pub blob_count: u64,
    pub bytes: u64,
}

/// Where a collection step goes on: the key of the last row it looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(pub Vec<String>);

/// One step of a collection: what it removed, and where the next step starts (`None`: done).
#[derive(Debug, Clone, Default)]
pub struct Step<T> {
    pub removed: Vec<T>,
    pub next: Option<Cursor>,
}

/// Blobs the collector holds, their rows deleted but not committed: delete their bytes, then
/// commit. Dropping it without committing gives them back untouched.
#[async_trait]
pub trait BlobClaim: Send {
    /// The claimed blobs and their recorded sizes.
    fn blobs(&self) -> &[(Digest, Option<u64>)];
    async fn commit(self: Box<Self>) -> Result<()>;
}

/// The life-cycle contract every backend fulfils.
#[async_trait]
pub trait LifecycleStore: Send + Sync + 'static {
    /// Whether every file of the BlobStore has a row (see `berth_state` in migration 2).
    async fn blobs_adopted(&self) -> Result<bool>;
    /// Records files found in the BlobStore (idempotent), then, with `done`, marks the
    /// adoption finished.
    async fn adopt_blobs(&self, found: &[(Digest, u64)], done: bool) -> Result<()>;
    /// Rows whose size is unknown (migrated from version 1), at most `limit`.
    async fn blobs_without_size(&self, limit: usize) -> Result<Vec<Digest>>;
    async fn set_blob_size(&self, digest: &Digest, size: u64) -> Result<()>;

    /// Changes of tags in `ns` (of one tag, or all), newest first, at most `limit`.
    async fn tag_history(
        &self,
        ns: &Namespace,
        tag: Option<&Tag>,
        limit: usize,
    ) -> Result<Vec<TagEvent>>;
    /// Brings a deleted manifest back, or points a deleted or moved tag at what it pointed at
    /// before (or at `digest`), bringing that manifest back if it was deleted.
    async fn restore(
        &self,
        ns: &Namespace,
        tag: Option<&Tag>,
        digest: Option<&Digest>,
        actor: Actor<'_>,
    ) -> Result<Restore>;
    async fn usage(&self, repo: &RepoName) -> Result<Usage>;
    /// `(blobs, bytes)` the blob store holds: every stored blob and manifest, counted once
    /// however many repositories hold it (a blob of unknown size counts no bytes).
    async fn blob_totals(&self) -> Result<(u64, u64)>;

    /// Tags of `ns` with their ages.
    async fn tag_infos(&self, ns: &Namespace) -> Result<Vec<TagInfo>>;
    /// Live manifests of `ns` with their ages and standing.
    async fn manifest_ages(&self, ns: &Namespace) -> Result<Vec<ManifestAge>>;
    /// Bytes that removing these manifests of `ns` would free once collected: their own and
    /// those of the blobs they name, unless something else still holds them.
    async fn freed_bytes(&self, ns: &Namespace, manifests: &[Digest]) -> Result<u64>;
    /// Records when manifests were last pulled (batched by the caller: not a write per pull).
    async fn record_pulls(&self, pulls: &[(Namespace, Digest, i64)]) -> Result<()>;
    /// Deletes a manifest for good at the next collection, skipping the undo window (a proxy's
    /// cache eviction: the remote still has it).
    async fn evict_manifest(
        &self,
        ns: &Namespace,
        digest: &Digest,
        actor: Actor<'_>,
    ) -> Result<bool>;

    /// Removes deleted manifests past the undo window (never one a live manifest names),
    /// looking at up to `limit` candidates after `after`.
    async fn gc_expire_manifests(
        &self,
        cutoffs: Cutoffs,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Step<(Namespace, Digest)>>;
    /// Removes links of blobs no manifest of their image names, untouched since the cut-off.
    async fn gc_unlink_blobs(
        &self,
        cutoffs: Cutoffs,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Step<(Namespace, Digest)>>;
    /// Claims blobs nothing links or names any more, untouched since the cut-off; the claim's
    /// cursor says where the next one starts.
    async fn gc_claim_blobs(
        &self,
        cutoffs: Cutoffs,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Box<dyn BlobClaim>, Option<Cursor>)>;
    /// Forgets tag history older than `before_ms`; returns how many events.
    async fn gc_prune_history(&self, before_ms: i64) -> Result<u64>;
    /// What the three steps above would remove now, listing at most `limit` of each.
    async fn gc_preview(&self, cutoffs: Cutoffs, limit: usize) -> Result<Preview>;
}
