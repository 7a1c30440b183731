//! Storage: bytes in a [`BlobStore`], everything about them in a [`MetadataStore`].
//!
//! The registry logic above (repositories) joins the two: a blob is stored once by digest in
//! the BlobStore and visible to an image only through a link in the MetadataStore; an upload
//! session is data in the BlobStore and a record (image, client, size) in the MetadataStore;
//! a manifest is bytes in the BlobStore and one transaction in the MetadataStore (its row, its
//! references, its tag, its place in the referrers list). Keeping them apart is what lets the
//! metadata live in a database (SQLite embedded, PostgreSQL shared by several cores) while the
//! bytes stay on a filesystem (and later in an object store), and what makes reachability a
//! query instead of a walk of the disk.
//!
//! # Layout
//! - [`blob`]: the BlobStore trait, filesystem and in-memory backends, its contract suite.
//! - [`metadata`]: the MetadataStore trait, the SQL backend, its contract suite.
//! - [`import`]: a one-time import of the filesystem metadata older releases wrote.
//! - [`adopt`]: a one-time adoption of blob files metadata version 1 did not track.

pub mod adopt;
pub mod blob;
pub mod import;
pub mod manifest_cache;
pub mod metadata;
pub mod private;
pub mod pulls;

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub use blob::BlobStore;
pub use metadata::MetadataStore;

use crate::oci::{Digest, ImageName, RepoName};

/// A stream of body bytes, in or out.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where an image's metadata lives: a Berth repository and an image name inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Namespace {
    pub repo: RepoName,
    pub image: ImageName,
}

impl Namespace {
    pub fn new(repo: RepoName, image: ImageName) -> Self {
        Namespace { repo, image }
    }

    /// `repo/image`.
    pub fn path(&self) -> String {
        format!("{}/{}", self.repo, self.image)
    }

    /// Parses `repo/image` as written by [`Namespace::path`].
    pub fn parse(path: &str) -> Option<Namespace> {
        let (repo, image) = path.split_once('/')?;
        Some(Namespace::new(repo.parse().ok()?, image.parse().ok()?))
    }
}

/// An open upload session, for the sweeper and the per-repository cap.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: String,
    pub namespace: Namespace,
    /// Who opened it (a user name or an address), for per-client shares of the cap.
    pub client: String,
    /// Time since bytes last arrived (or since it was opened).
    pub idle: std::time::Duration,
    /// No bytes ever began to arrive: the first to give way at the cap.
    pub empty: bool,
}

impl From<metadata::UploadRecord> for UploadInfo {
    fn from(r: metadata::UploadRecord) -> Self {
        let idle_ms = u64::try_from(metadata::now_ms().saturating_sub(r.updated_at)).unwrap_or(0);
        UploadInfo {
            id: r.id,
            namespace: r.namespace,
            client: r.client,
            idle: std::time::Duration::from_millis(idle_ms),
            empty: !r.started,
        }
    }
}

/// BlobStore failures. `NotFound`, `OffsetMismatch`, `DigestMismatch` and `Body` are the
/// caller's business; `Io` and `Corrupt` are ours and become a logged 500.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("not found")]
    NotFound,
    #[error("upload is at offset {current}, the chunk starts at {requested}")]
    OffsetMismatch { current: u64, requested: u64 },
    #[error("content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("digest algorithm of {0} cannot be stored (sha256 only)")]
    UnsupportedDigest(Digest),
    #[error("reading the request body failed: {0}")]
    Body(io::Error),
    #[error("storage I/O failed: {0}")]
    Io(#[from] io::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The blob store cannot be reached (an S3 endpoint down): worth retrying shortly.
    #[error("the blob store is unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// The two stores a registry runs on.
#[derive(Clone)]
pub struct Stores {
    pub blobs: Arc<dyn BlobStore>,
    pub meta: Arc<dyn MetadataStore>,
    /// Pull times waiting to be written (see [`pulls`]).
    pub pulls: Arc<pulls::PullLog>,
    /// Manifests read lately (see [`manifest_cache`]).
    pub manifests: Arc<manifest_cache::ManifestCache>,
}

/// Where the stores are (the `storage` section of the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Filesystem root of the blobs (unless `blobs` says otherwise) and, by default, of the
    /// SQLite metadata file.
    pub root: PathBuf,
    pub metadata: metadata::sql::Backend,
    pub blobs: BlobBackend,
}

/// Where blob bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobBackend {
    /// Under `root`.
    Filesystem,
    /// In an S3-compatible bucket.
    S3(blob::s3::S3Settings),
}

impl StorageConfig {
    /// The default: everything under `root`, metadata in `root/metadata.db`.
    pub fn under(root: impl Into<PathBuf>) -> StorageConfig {
        let root = root.into();
        StorageConfig {
            metadata: metadata::sql::Backend::Sqlite(root.join("metadata.db")),
            root,
            blobs: BlobBackend::Filesystem,
        }
    }
}

/// Why an upload session could not be ended.
#[derive(Debug, thiserror::Error)]
pub enum UploadEndError {
    #[error(transparent)]
    Blobs(#[from] StorageError),
    #[error(transparent)]
    Metadata(#[from] metadata::MetadataError),
}

/// Why the stores could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("blob store at {path}: {source}")]
    Blobs { path: String, source: io::Error },
    #[error("storage root {path}: {source}")]
    Root { path: String, source: io::Error },
    #[error("{0}")]
    Metadata(#[from] metadata::MetadataError),
    #[error("importing the filesystem metadata of an older release: {0}")]
    Import(String),
    #[error("adopting the blob store's files: {0}")]
    Adopt(#[from] adopt::AdoptError),
}

impl Stores {
    /// Opens both stores; on first start over a data directory of an older release, imports its
    /// filesystem metadata (once).
    pub async fn open(config: &StorageConfig) -> std::result::Result<Stores, OpenError> {
        private::dir(&config.root).map_err(|source| OpenError::Root {
            path: config.root.display().to_string(),
            source,
        })?;
        let blobs: Arc<dyn BlobStore> = match &config.blobs {
            BlobBackend::Filesystem => {
                Arc::new(blob::fs::FsBlobStore::open(&config.root).map_err(|source| {
                    OpenError::Blobs {
                        path: config.root.display().to_string(),
                        source,
                    }
                })?)
            }
            BlobBackend::S3(s3) => {
                let failed = |e: StorageError| OpenError::Blobs {
                    path: format!(
                        "s3 bucket {} at {}",
                        s3.bucket,
                        s3.endpoint.as_deref().unwrap_or("AWS")
                    ),
                    source: io::Error::other(e.to_string()),
                };
                let store = blob::s3::S3BlobStore::open(s3).map_err(failed)?;
                store.check().await.map_err(failed)?;
                Arc::new(store)
            }
        };
        let meta = metadata::sql::SqlMetadata::open(&config.metadata).await?;
        let stores = Stores {
            blobs,
            meta: Arc::new(meta),
            pulls: Arc::default(),
            manifests: Arc::default(),
        };
        import::if_needed(&config.root, &stores)
            .await
            .map_err(OpenError::Import)?;
        adopt::if_needed(&stores).await?;
        Ok(stores)
    }

    /// Ends an upload session: data first, then the record (a record without data is answered
    /// as an unknown session; data without a record would be an orphan). `false` if there was
    /// no record.
    pub async fn end_upload(&self, id: &str) -> std::result::Result<bool, UploadEndError> {
        self.blobs.upload_cancel(id).await?;
        Ok(self.meta.upload_close(id).await?)
    }

    /// In memory, for tests: memory blobs and an SQLite database of its own in memory.
    pub async fn memory() -> std::result::Result<Stores, metadata::MetadataError> {
        let meta = metadata::sql::SqlMetadata::open(&metadata::sql::Backend::Memory).await?;
        Ok(Stores {
            blobs: Arc::new(blob::memory::MemoryBlobStore::new()),
            meta: Arc::new(meta),
            pulls: Arc::default(),
            manifests: Arc::default(),
        })
    }
}
