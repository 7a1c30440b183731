//! Storage: where bytes and metadata live, behind one trait.
//!
//! The registry logic above (repositories) speaks in digests, names and tags; a [`Storage`]
//! backend turns those into files, objects or rows. Two backends exist now — [`fs::FsStorage`]
//! for production and [`memory::MemoryStorage`] for tests — and the same suite (`suite.rs`) runs
//! against both, so an S3 or database backend can be added later by passing that suite.
//!
//! # Model
//! - **Blobs** are global and content-addressed: pushed once, stored once.
//! - A blob is visible to an image only through a **link** in that image's namespace.
//! - **Uploads** are sessions that collect bytes; committing one verifies the digest and size,
//!   makes the data durable, and only then makes it visible (moves it into the blob store and
//!   links it). Sessions survive a restart of the process.
//! - **Manifests** are blobs too (their bytes, byte-exact), linked as revisions of an image with
//!   the media type they were pushed with; **tags** point at manifest digests; **referrers** index
//!   manifests by their `subject`.

pub mod fs;
pub mod memory;
pub mod metadata;
#[cfg(test)]
mod suite;

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::oci::{Descriptor, Digest, ImageName, RepoName, Tag};

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

    /// `repo/image`: a relative path made only of grammar-checked components.
    pub fn path(&self) -> String {
        format!("{}/{}", self.repo, self.image)
    }
}

/// An open upload session, for the sweeper and the per-repository cap.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub id: String,
    pub namespace: Namespace,
    /// Who opened it (a user name or a client address), for per-client shares of the cap.
    pub client: String,
    /// Time since bytes last arrived (or since it was opened).
    pub idle: std::time::Duration,
}

impl Namespace {
    /// Parses `repo/image` as written by [`Namespace::path`].
    pub fn parse(path: &str) -> Option<Namespace> {
        let (repo, image) = path.split_once('/')?;
        Some(Namespace::new(repo.parse().ok()?, image.parse().ok()?))
    }
}

/// Storage failures. `NotFound`, `OffsetMismatch`, `DigestMismatch` and `Body` are the caller's
/// business; `Io` and `Corrupt` are ours and become a logged 500.
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
    #[error("stored metadata is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// The storage contract every backend fulfils. All listings are sorted.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Size of a stored blob, `None` if absent.
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Streams `len` bytes of a blob from `start`.
    async fn blob_read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream>;
    /// Reads a whole (small) blob, such as a manifest.
    async fn blob_bytes(&self, digest: &Digest) -> Result<Bytes>;
    /// Stores small content (a manifest) under its digest, durably. The digest is computed here.
    async fn blob_put(&self, bytes: Bytes) -> Result<Digest>;

    /// Makes a stored blob visible in `ns`.
    async fn link_blob(&self, ns: &Namespace, digest: &Digest) -> Result<()>;
    /// Whether `digest` is visible in `ns`.
    async fn blob_linked(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;
    /// Hides a blob from `ns`; `false` if it was not linked.
    async fn unlink_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;

    /// Opens an upload session in `ns` for `client` and returns its id.
    async fn upload_create(&self, ns: &Namespace, client: &str) -> Result<String>;
    /// Bytes received so far; `NotFound` for an unknown or finished session.
    async fn upload_size(&self, ns: &Namespace, id: &str) -> Result<u64>;
    /// Appends the stream. With `offset`, it must equal the current size (`OffsetMismatch`).
    /// Bytes received before a broken body are kept, so the client can resume.
    async fn upload_append(
        &self,
        ns: &Namespace,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64>;
    /// Verifies the content against `expected`, makes it durable, moves it into the blob store
    /// and links it into `ns`; returns its size. On a mismatch the session is discarded.
    async fn upload_commit(&self, ns: &Namespace, id: &str, expected: &Digest) -> Result<u64>;
    /// Discards a session.
    async fn upload_cancel(&self, ns: &Namespace, id: &str) -> Result<()>;
    /// Every open upload session.
    async fn uploads(&self) -> Result<Vec<UploadInfo>>;
    /// Reads back `len` bytes of a session's data from `offset` (a proxy serves a blob to
    /// waiting clients while it is still arriving from the remote).
    async fn upload_read(&self, ns: &Namespace, id: &str, offset: u64, len: u64) -> Result<Bytes>;

    /// Links a stored manifest into `ns` with its media type.
    async fn manifest_link(&self, ns: &Namespace, digest: &Digest, media_type: &str) -> Result<()>;
    /// The media type of a manifest linked in `ns`, `None` if not linked.
    async fn manifest_media_type(&self, ns: &Namespace, digest: &Digest) -> Result<Option<String>>;
    /// Removes a manifest link; `false` if it was not linked.
    async fn manifest_unlink(&self, ns: &Namespace, digest: &Digest) -> Result<bool>;

    async fn tag_get(&self, ns: &Namespace, tag: &Tag) -> Result<Option<Digest>>;
    async fn tag_set(&self, ns: &Namespace, tag: &Tag, digest: &Digest) -> Result<()>;
    async fn tag_delete(&self, ns: &Namespace, tag: &Tag) -> Result<bool>;
    /// Tags of `ns`, sorted; `None` if the namespace holds nothing at all.
    async fn tags(&self, ns: &Namespace) -> Result<Option<Vec<String>>>;

    /// Records that `descriptor` (a manifest in `ns`) has `subject` as its subject.
    async fn referrer_add(
        &self,
        ns: &Namespace,
        subject: &Digest,
        descriptor: &Descriptor,
    ) -> Result<()>;
    async fn referrer_remove(
        &self,
        ns: &Namespace,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()>;
    /// Descriptors of the manifests whose subject is `subject`, ordered by digest.
    async fn referrers(&self, ns: &Namespace, subject: &Digest) -> Result<Vec<Descriptor>>;

    /// Images of a Berth repository that hold at least one manifest, sorted.
    async fn images(&self, repo: &RepoName) -> Result<Vec<ImageName>>;
}
