//! Repositories: what the API layer talks to.
//!
//! A [`Repository`] speaks in image names, digests, tags and byte streams, and answers with
//! meanings ([`RepoError`]: "blob unknown", "denied by a rule", "the remote is down"), never with
//! a wire code: `api/error.rs` alone turns them into OCI codes and statuses.
//! The API layer never learns which kind it serves: a hosted repository stores content, and the
//! proxy (a caching decorator) and group (an ordered list of members) kinds implement the same
//! trait.

mod error;
pub mod group;
pub mod hosted;
pub mod proxy;
pub mod upload_cap;

use async_trait::async_trait;
use bytes::Bytes;

use crate::oci::{Descriptor, Digest, ImageName, Reference, RepoName};
pub use crate::storage::metadata::Page;
use crate::storage::ByteStream;

pub use error::{RepoError, Result};

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

    /// Size of a blob visible in `image` ([`RepoError::BlobUnknown`] if not).
    async fn blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64>;
    /// Streams `len` bytes of a blob from `start`.
    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream>;
    /// A URL the client may fetch a blob visible in `image` from itself (the bucket's, when
    /// `storage.blobs.s3.redirect` is on); `None`: read it with [`Repository::blob_read`].
    async fn blob_redirect(&self, _image: &ImageName, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }
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

    /// Tags of `image` in `page`, sorted ([`RepoError::NameUnknown`] if the image does not exist). The
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
