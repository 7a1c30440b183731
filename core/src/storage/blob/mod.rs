//! The BlobStore: content-addressed bytes and upload data, nothing else.
//!
//! Blobs are immutable and named by their digest; upload sessions are data files named by the
//! session id, appended at an offset, and committed — verified against the expected digest,
//! made durable, then moved among the blobs — or cancelled. Which image sees which blob, and
//! who owns a session, is the MetadataStore's business: the two are joined only in the
//! repository layer. Filesystem for one core; S3 for several cores sharing one bucket.

pub mod fs;
pub mod memory;
pub mod s3;
#[cfg(any(test, feature = "contract-suite"))]
pub mod suite;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ByteStream, Result};
use crate::oci::Digest;

/// The bytes contract every backend fulfils.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a stored blob, `None` if absent.
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Streams `len` bytes of a blob from `start` (`NotFound` if absent).
    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream>;
    /// Where a client may fetch a stored blob itself, instead of through this process (a
    /// presigned URL of a bucket); `None`: serve it with [`BlobStore::read`].
    async fn redirect_url(&self, _digest: &Digest) -> Result<Option<String>> {
        Ok(None)
    }
    /// Reads a whole (small) blob, such as a manifest.
    async fn bytes(&self, digest: &Digest) -> Result<Bytes>;
    /// Stores small content durably under its digest, computed here.
    async fn put(&self, bytes: Bytes) -> Result<Digest>;
    /// Removes a blob (garbage collection); `false` if it was not there.
    async fn delete(&self, digest: &Digest) -> Result<bool>;
    /// Stored blobs after `after`, in digest order, at most `limit` (garbage collection).
    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>>;

    /// Creates the empty data of a new session.
    async fn upload_create(&self, id: &str) -> Result<()>;
    /// Bytes received so far; `NotFound` for an unknown or finished session.
    async fn upload_size(&self, id: &str) -> Result<u64>;
    /// Appends the stream. With `offset`, it must equal the current size (`OffsetMismatch`).
    /// Bytes received before a broken body are kept, so the client can resume.
    async fn upload_append(&self, id: &str, offset: Option<u64>, body: ByteStream) -> Result<u64>;
    /// Reads back `len` bytes of a session's data from `offset`.
    async fn upload_read(&self, id: &str, offset: u64, len: u64) -> Result<Bytes>;
    /// Verifies the data against `expected`, makes it durable and stores it as that blob;
    /// returns its size. On a mismatch the data is discarded (`DigestMismatch`).
    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64>;
    /// Discards a session's data (no error if it is already gone).
    async fn upload_cancel(&self, id: &str) -> Result<()>;
    /// Ids of every session that has data (garbage collection of orphans).
    async fn uploads(&self) -> Result<Vec<String>>;
}

/// Upload ids are ours (32 hex chars); anything else cannot name a session.
pub fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A new session id.
pub fn new_upload_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}
