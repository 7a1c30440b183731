//! Repositories: what the API layer talks to.
//!
//! A [`Repository`] speaks in image names, digests, tags and byte streams, and answers with
//! spec-level outcomes ([`RepoError::Client`]) or internal failures ([`RepoError::Storage`]).
//! The API layer never learns which kind it serves: a hosted repository stores content, and the
//! proxy (a caching decorator) and group (an ordered list of members) kinds implement the same
//! trait.

pub mod hosted;

use async_trait::async_trait;
use bytes::Bytes;

use crate::oci::{Descriptor, Digest, ImageName, Reference, RegistryError, RepoName};
use crate::storage::{ByteStream, StorageError};

pub use hosted::{HostedRepository, WritePolicy};

/// The kinds of repository. Only `Hosted` exists yet; proxy and group follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoKind {
    Hosted,
}

/// A failure: either the client's (a spec error to send back) or ours (logged, 500).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Client(#[from] RegistryError),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

pub type Result<T> = std::result::Result<T, RepoError>;

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

    async fn upload_start(&self, image: &ImageName) -> Result<String>;
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
    ) -> Result<PushedManifest>;
    async fn manifest_delete(&self, image: &ImageName, reference: &Reference) -> Result<()>;

    /// Tags of `image`, sorted (`NAME_UNKNOWN` if the image does not exist).
    async fn tags(&self, image: &ImageName) -> Result<Vec<String>>;
    /// Images in this repository, sorted.
    async fn images(&self) -> Result<Vec<ImageName>>;
    /// Manifests whose subject is `subject`.
    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>>;
}
