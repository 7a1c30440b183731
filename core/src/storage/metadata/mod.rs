//! The MetadataStore: everything about content except its bytes — which image sees which blob,
//! manifests with their media type and references, tags, referrers, upload sessions — in a real
//! database, so that several cores can share it, a push is one transaction, listings page in the
//! store and reachability is a query (what garbage collection and cleanup policies build on).
//!
//! One SQL implementation ([`sql::SqlMetadata`]) runs the same statements on SQLite (embedded,
//! the default: one file under the storage root) and PostgreSQL (shared by several cores). Every
//! backend runs the public contract suite in `suite.rs` (feature `contract-suite`).
//!
//! # Model
//! - `blob_links`: a blob is visible in an image only through its link.
//! - `manifests`: a manifest linked in an image, its media type, size, `subject`,
//!   `artifactType` and annotations (the referrers API is a query on `subject`), and when it was
//!   pushed and last pulled; `manifest_refs`: the blobs and child manifests it names.
//! - `tags`: image, tag → manifest digest.
//! - `uploads`: open sessions with their image, client and size, so any core can continue one.
//! - `blobs`: every digest the BlobStore holds or is about to hold, with its size; written
//!   before bytes are placed and touched on every link, so the collector (which deletes a row
//!   and its bytes under one transaction, and only rows untouched for a grace period) never
//!   takes bytes a push in flight relies on.
//! - `manifests.deleted_at` and `tag_events`: deleted manifests stay, restorable, for the undo
//!   window; every change of a tag is recorded (what, when, by whom). See [`lifecycle`].
//! - `settings`: what operators change at run time ([`settings`]); `sessions`: web UI sign-ins
//!   ([`sessions`]); `signing_keys`, `leases`, `gc_runs`: what cores on one database share
//!   ([`cluster`]).

pub mod cluster;
pub mod lifecycle;
pub mod replication;
pub mod sessions;
pub mod settings;
pub mod sql;
#[cfg(any(test, feature = "contract-suite"))]
pub mod suite;
#[cfg(any(test, feature = "contract-suite"))]
pub mod suite_cluster;
#[cfg(any(test, feature = "contract-suite"))]
mod suite_fixtures;
#[cfg(any(test, feature = "contract-suite"))]
pub mod suite_lifecycle;
pub mod summary;

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::Namespace;
use crate::oci::{Descriptor, Digest, ImageName, RepoName, Tag};
pub use lifecycle::LifecycleStore;

/// Metadata failures: all ours (a logged 500), except what a caller maps from `None`/`false`.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata database: {0}")]
    Database(String),
    /// The database cannot be reached (down, restarting, out of connections): worth retrying
    /// shortly; the pool reconnects by itself when it is back.
    #[error("the metadata database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored metadata is corrupt: {0}")]
    Corrupt(String),
    #[error("metadata migration {version} failed: {reason}")]
    Migration { version: i64, reason: String },
    /// The database was migrated by a newer release: this one would misread what it added.
    #[error(
        "the metadata database has schema version {found}, newer than this release knows \
         ({known}): run the newer release (every core on one database must be at a release \
         that knows its schema)"
    )]
    NewerSchema { found: i64, known: i64 },
    /// A manifest names a blob not linked in its image, or a child manifest not present there
    /// (found when the push's transaction re-checks what the repository checked before).
    #[error("{0} is not in the image")]
    Missing(Digest),
    /// The collector removed the record of bytes being placed (the push stalled for longer
    /// than the grace period): the bytes may be gone, so nothing was linked.
    #[error("{0} was collected while it was being stored")]
    Collected(Digest),
}

pub type Result<T> = std::result::Result<T, MetadataError>;

/// A listing's window: entries after `after` (exclusive), at most `limit` of them.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: Option<usize>,
}

impl Page {
    pub fn all() -> Page {
        Page::default()
    }
}

/// A manifest as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<Digest>,
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
    /// Blobs it names (config, layers).
    pub blobs: Vec<Digest>,
    /// Child manifests it names (an index's entries).
    pub children: Vec<Digest>,
}

impl ManifestRecord {
    /// The record of a parsed manifest of `size` bytes.
    pub fn from_info(digest: Digest, size: u64, info: &crate::oci::ManifestInfo) -> Self {
        ManifestRecord {
            digest,
            media_type: info.media_type.clone(),
            size,
            subject: info.subject.clone(),
            artifact_type: info.artifact_type.clone(),
            annotations: info.annotations.clone(),
            blobs: info.blobs.iter().map(|r| r.digest.clone()).collect(),
            children: info.children.iter().map(|r| r.digest.clone()).collect(),
        }
    }

    /// Everything it names, blobs first.
    pub fn references(&self) -> impl Iterator<Item = &Digest> {
        self.blobs.iter().chain(&self.children)
    }

    /// The descriptor the referrers API lists for it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.to_string(),
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone(),
            urls: None,
            platform: None,
        }
    }
}

/// What deleting a manifest removed with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deleted {
    /// Tags that pointed at it or at its referrers.
    pub tags: Vec<String>,
    /// Its referrers, deleted with it.
    pub referrers: Vec<Digest>,
    /// Its subject, whose referrers list lost it.
    pub subject: Option<Digest>,
}

/// Who changes a tag and why, for its history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor<'a> {
    /// A user name, `anonymous`, or the part of Berth that acted (`proxy`, `gc`).
    pub name: &'a str,
    /// `push`, `delete`, `manifest deleted`, `restore`, `policy <name>`, `cache`, `import`.
    pub reason: &'a str,
}

impl<'a> Actor<'a> {
    pub fn new(name: &'a str, reason: &'a str) -> Self {
        Actor { name, reason }
    }
}

/// How a manifest is stored.
#[derive(Debug, Clone, Copy)]
pub struct Put<'a> {
    /// A tag to point at it.
    pub tag: Option<&'a Tag>,
    pub actor: Actor<'a>,
    /// Re-check inside the transaction that every blob is linked in the image and every child
    /// manifest is there (a push); a proxy's cache stores manifests before their blobs.
    pub check_references: bool,
}

/// An open upload session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRecord {
    pub id: String,
    pub namespace: Namespace,
    /// Who opened it (a user name or an address).
    pub client: String,
    /// Bytes received so far.
    pub size: u64,
    /// Unix milliseconds of the last bytes (or of the opening): idle sessions give way at the
    /// upload cap, so this needs better than whole seconds.
    pub updated_at: i64,
    /// Whether bytes ever began to arrive ([`MetadataStore::upload_touch`]): a session that
    /// never received any is the cheapest to drop and the first to give way at the cap.
    pub started: bool,
}

/// The metadata contract every backend fulfils. Listings are sorted.
#[async_trait]
pub trait MetadataStore:
    LifecycleStore
    + settings::SettingsStore
    + sessions::SessionStore
    + cluster::ClusterStore
    + replication::ReplicationStore
    + summary::SummaryStore
    + Send
    + Sync
    + 'static
{
    /// Records that the bytes of `digest` are about to be placed in the BlobStore: call it
    /// before placing them, so the collector leaves them alone for the grace period.
    async fn blob_intent(&self, digest: &Digest) -> Result<()>;
    /// Records that the bytes are durably placed, with their size, and (with `ns`) links them
    /// there, in one transaction. [`MetadataError::Collected`] if the collector took the record
    /// meanwhile: nothing is linked, and the caller must place the bytes again.
    async fn blob_placed(&self, ns: Option<&Namespace>, digest: &Digest, size: u64) -> Result<()>;
    /// Links a blob the store holds into `ns` (a mount; idempotent, refreshes the link's age);
    /// `false` if no stored blob has that digest.
    async fn link_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;
    async fn blob_linked(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;
    /// `false` if it was not linked.
    async fn unlink_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;

    /// Stores a manifest whose bytes were placed after [`MetadataStore::blob_intent`], its
    /// references and (optionally) a tag pointing at it, in one transaction: a concurrent
    /// reader sees all of it or none. Re-pushing a deleted manifest brings it back.
    async fn put_manifest(&self, ns: &Namespace, m: &ManifestRecord, put: &Put<'_>) -> Result<()>;
    /// The media type of a manifest linked in `ns` (not deleted).
    async fn manifest_media_type(&self, ns: &Namespace, digest: &Digest) -> Result<Option<String>>;
    /// Deletes a manifest, its referrers (signatures, SBOMs: they go with their subject) and
    /// the tags pointing at any of them, in one transaction; `None` if it was not there. The
    /// manifests stay restorable until the undo window has passed.
    async fn delete_manifest(
        &self,
        ns: &Namespace,
        digest: &Digest,
        actor: Actor<'_>,
    ) -> Result<Option<Deleted>>;

    async fn tag(&self, ns: &Namespace, tag: &Tag) -> Result<Option<Digest>>;
    /// The manifest a tag points at and its media type, in one query (the hot path of pulls).
    async fn tagged_manifest(&self, ns: &Namespace, tag: &Tag) -> Result<Option<(Digest, String)>>;
    /// `false` if there was no such tag.
    async fn delete_tag(&self, ns: &Namespace, tag: &Tag, actor: Actor<'_>) -> Result<bool>;
    /// Tags of `ns`, sorted and paged; `None` if the image holds nothing at all.
    async fn tags(&self, ns: &Namespace, page: &Page) -> Result<Option<Vec<String>>>;
    /// Images of a repository that hold at least one manifest, sorted and paged.
    async fn images(&self, repo: &RepoName, page: &Page) -> Result<Vec<ImageName>>;
    /// Descriptors of the manifests in `ns` whose subject is `subject`, ordered by digest.
    async fn referrers(&self, ns: &Namespace, subject: &Digest) -> Result<Vec<Descriptor>>;

    async fn upload_open(&self, u: &UploadRecord) -> Result<()>;
    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>>;
    /// Records progress (and activity) of a session.
    async fn upload_progress(&self, id: &str, size: u64) -> Result<()>;
    /// Records that bytes are arriving for a session (an append began): it is active, and
    /// no longer an empty session the cap may drop first.
    async fn upload_touch(&self, id: &str) -> Result<()>;
    /// `false` if it was not open.
    async fn upload_close(&self, id: &str) -> Result<bool>;
    /// Open sessions, of one repository or all, by id.
    async fn uploads(&self, repo: Option<&RepoName>) -> Result<Vec<UploadRecord>>;
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
