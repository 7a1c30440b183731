//! Blob reads sent to the bucket (`storage.blobs.s3.redirect`): a `GET` of a blob is answered
//! with a presigned URL, so the bytes flow from the object store to the client and never
//! through a core or the edge. Off by default: clients must then reach the bucket's endpoint
//! themselves, and an operator chooses that knowingly (Distribution's `redirect` is the same).

use std::sync::Arc;
use std::time::Duration;

use object_store::signer::{Method, Signer};

use super::{io_err, S3BlobStore};
use crate::oci::Digest;
use crate::storage::Result;

/// How long a presigned URL stays good: long enough for a slow pull of a large layer to
/// start (the URL is checked when the request arrives, not while it streams), short enough
/// that a URL seen in a log is soon worthless.
const VALID_FOR: Duration = Duration::from_secs(20 * 60);

impl S3BlobStore {
    /// Answers [`super::BlobStore::redirect_url`] with URLs `signer` presigns.
    pub fn with_redirects(mut self, signer: Arc<dyn Signer>) -> S3BlobStore {
        self.signer = Some(signer);
        self
    }

    /// A presigned `GET` of the blob's object, if redirects are on; the caller checked that
    /// the blob exists.
    pub(super) async fn presigned(&self, digest: &Digest) -> Result<Option<String>> {
        let Some(signer) = &self.signer else {
            return Ok(None);
        };
        let url = signer
            .signed_url(Method::GET, &self.blob_key(digest), VALID_FOR)
            .await
            .map_err(io_err)?;
        Ok(Some(url.to_string()))
    }
}
