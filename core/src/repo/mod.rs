//! Repositories: what the API layer talks to.
//!
//! A [`Repository`] speaks in image names, digests, tags and byte streams, and answers with
//! spec-level outcomes ([`RepoError::Client`]) or internal failures ([`RepoError::Storage`]).
//! The API layer never learns which kind it serves: a hosted repository stores content, and the
//! proxy (a caching decorator) and group (an ordered list of members) kinds implement the same
//! trait.

pub mod group;
pub mod hosted;
pub mod proxy;
pub mod upload_cap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::oci::{Descriptor, Digest, ImageName, Reference, RegistryError, RepoName};
pub use crate::storage::metadata::Page;
use crate::storage::{ByteStream, StorageError};

pub use group::{GroupRepository, GroupSettings};
pub use hosted::{HostedRepository, WritePolicy};
pub use proxy::{ProxyRepository, ProxySettings, RemoteTimeouts};

/// The kinds of repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoKind {
    Hosted,
    Proxy,
    Group,
}

/// A failure: either the client's (a spec error to send back) or ours (logged, 500).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Client(#[from] RegistryError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Metadata(crate::storage::metadata::MetadataError),
    /// A remote registry (behind a proxy repository) could not answer: a 502 naming it.
    #[error("{0}")]
    Remote(String),
    /// A chunk does not start where the upload session ends.
    #[error("chunk starts at {requested} but the upload has {current} bytes")]
    OffsetMismatch { current: u64, requested: u64 },
    /// Content over a size limit.
    #[error("{what} exceeds {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    /// A bounded resource is in use by live work; the client may retry after a while.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after: std::time::Duration,
    },
}

pub type Result<T> = std::result::Result<T, RepoError>;

impl From<crate::storage::UploadEndError> for RepoError {
    fn from(e: crate::storage::UploadEndError) -> Self {
        match e {
            crate::storage::UploadEndError::Blobs(e) => RepoError::Storage(e),
            crate::storage::UploadEndError::Metadata(e) => e.into(),
        }
    }
}

/// What the store's transaction found on re-checking is the client's business; the rest is a
/// logged 500.
impl From<crate::storage::metadata::MetadataError> for RepoError {
    fn from(e: crate::storage::metadata::MetadataError) -> Self {
        use crate::oci::ErrorCode;
        use crate::storage::metadata::MetadataError;
        match e {
            MetadataError::Missing(d) => RepoError::Client(
                RegistryError::new(
                    ErrorCode::ManifestBlobUnknown,
                    format!("manifest references {d}, which is not in the image (any more)"),
                )
                .with_detail(serde_json::json!({ "digest": d.to_string() })),
            ),
            MetadataError::Collected(d) => client(
                ErrorCode::BlobUploadInvalid,
                format!("{d} was garbage-collected while it was being stored; push it again"),
            ),
            other => RepoError::Metadata(other),
        }
    }
}

/// A spec error for the client: the one constructor every layer uses.
pub fn client(code: crate::oci::ErrorCode, msg: impl Into<String>) -> RepoError {
    RepoError::Client(RegistryError::new(code, msg))
}

impl RepoError {
    /// Whether this says "not here" (so a group may ask its next member).
    pub fn is_not_found(&self) -> bool {
        use crate::oci::ErrorCode::*;
        matches!(self, RepoError::Client(e) if matches!(e.code, BlobUnknown | ManifestUnknown | NameUnknown))
    }
}

/// A manifest as served: exact bytes, their digest and media type.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a successful manifest push reports back.
#[derive(Debug, Clone)]
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// The operations of the Distribution API, per repository.
#[async_trait]
pub trait Repository: Send + Sync + 'static {
    fn name(&self) -> &RepoName;
    fn kind(&self) -> RepoKind;

    /// Size of a blob visible in `image` (`BLOB_UNKNOWN` if not).
    async fn blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64>;
    /// Streams `len` bytes of a blob from `start`.
    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream>;
    async fn blob_delete(&self, image: &ImageName, digest: &Digest) -> Result<()>;
    /// Makes a blob visible in `image` if it is visible in `from`; `false` if it is not.
    async fn blob_mount(
        &self,
        image: &ImageName,
        digest: &Digest,
        from: &ImageName,
    ) -> Result<bool>;

    /// Opens an upload session for `client` (a user name or address: its share of the cap).
    async fn upload_start(&self, image: &ImageName, client: &str) -> Result<String>;
    async fn upload_size(&self, image: &ImageName, id: &str) -> Result<u64>;
    async fn upload_append(
        &self,
        image: &ImageName,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64>;
    async fn upload_finish(&self, image: &ImageName, id: &str, digest: &Digest) -> Result<u64>;
    async fn upload_cancel(&self, image: &ImageName, id: &str) -> Result<()>;

    async fn manifest(&self, image: &ImageName, reference: &Reference) -> Result<Manifest>;
    async fn manifest_put(
        &self,
        image: &ImageName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        actor: &str,
    ) -> Result<PushedManifest>;
    /// `actor` (a user name) goes into the tag history.
    async fn manifest_delete(
        &self,
        image: &ImageName,
        reference: &Reference,
        actor: &str,
    ) -> Result<()>;

    /// Tags of `image` in `page`, sorted (`NAME_UNKNOWN` if the image does not exist). The
    /// store pages, so a listing never loads more than the page.
    async fn tags(&self, image: &ImageName, page: &Page) -> Result<Vec<String>>;
    /// Images in this repository in `page`, sorted.
    async fn images(&self, page: &Page) -> Result<Vec<ImageName>>;
    /// Manifests whose subject is `subject`.
    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>>;

    /// Image names matching a V1 search term, at most `limit`.
    async fn search(&self, term: &str, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .images(&Page::all())
            .await?
            .into_iter()
            .map(|i| i.to_string())
            .filter(|i| i.contains(term))
            .take(limit)
            .collect())
    }

    /// Operational state for the admin API (a proxy's remote health, for instance).
    fn status(&self) -> serde_json::Value {
        serde_json::json!({})
    }
}
