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

pub mod sql;
#[cfg(any(test, feature = "contract-suite"))]
pub mod suite;

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::Namespace;
use crate::oci::{Descriptor, Digest, ImageName, RepoName, Tag};

/// Metadata failures: all ours (a logged 500), except what a caller maps from `None`/`false`.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata database: {0}")]
    Database(String),
    #[error("stored metadata is corrupt: {0}")]
    Corrupt(String),
    #[error("metadata migration {version} failed: {reason}")]
    Migration { version: i64, reason: String },
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
    /// Blobs and child manifests it names.
    pub references: Vec<Digest>,
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
            references: info
                .blobs
                .iter()
                .chain(&info.children)
                .map(|r| r.digest.clone())
                .collect(),
        }
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
    /// Tags that pointed at it.
    pub tags: Vec<String>,
    /// Its subject, whose referrers list lost it.
    pub subject: Option<Digest>,
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
}

/// The metadata contract every backend fulfils. Listings are sorted.
#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Makes a blob visible in `ns` (idempotent).
    async fn link_blob(&self, ns: &Namespace, digest: &Digest) -> Result<()>;
    async fn blob_linked(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;
    /// `false` if it was not linked.
    async fn unlink_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;

    /// Stores a manifest, its references and (optionally) a tag pointing at it, in one
    /// transaction: a concurrent reader sees all of it or none.
    async fn put_manifest(
        &self,
        ns: &Namespace,
        m: &ManifestRecord,
        tag: Option<&Tag>,
    ) -> Result<()>;
    /// The media type of a manifest linked in `ns`.
    async fn manifest_media_type(&self, ns: &Namespace, digest: &Digest) -> Result<Option<String>>;
    /// Removes a manifest with the tags pointing at it; `None` if it was not there.
    async fn delete_manifest(&self, ns: &Namespace, digest: &Digest) -> Result<Option<Deleted>>;

    async fn tag(&self, ns: &Namespace, tag: &Tag) -> Result<Option<Digest>>;
    /// The manifest a tag points at and its media type, in one query (the hot path of pulls).
    async fn tagged_manifest(&self, ns: &Namespace, tag: &Tag) -> Result<Option<(Digest, String)>>;
    /// `false` if there was no such tag.
    async fn delete_tag(&self, ns: &Namespace, tag: &Tag) -> Result<bool>;
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
