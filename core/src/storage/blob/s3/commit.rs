//! Committing an S3 upload session (see the parent module's "Commit"): the digest from the
//! running hash or from reading the parts back, a one-part session copied inside the object
//! store, several parts streamed through SHA-256 into a multipart upload completed only when
//! the digest matches.

use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sha2_state::Digest as _;

use super::checkpoint::same_etag;
use super::{io_err, Hasher, Part, RunningHash, S3BlobStore, MAX_COPY, PARALLEL_PARTS, PART};
use crate::oci::Digest;
use crate::storage::{Result, StorageError};

impl S3BlobStore {
    /// Streams the parts through SHA-256 and, with `into`, into a multipart upload there; the
    /// digest and size. Nothing is completed here.
    pub(super) async fn hash_parts(
        &self,
        parts: &[Part],
        mut into: Option<&mut WriteMultipart>,
    ) -> Result<(Digest, u64)> {
        let mut hasher = Hasher::new();
        let mut size = 0u64;
        for p in parts {
            let mut stream = self.store.get(&p.path).await.map_err(io_err)?.into_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(io_err)?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if let Some(w) = into.as_deref_mut() {
                    w.wait_for_capacity(PARALLEL_PARTS).await.map_err(io_err)?;
                    w.put(chunk);
                }
            }
        }
        Ok((Digest::from_sha256(hasher.finalize().into()), size))
    }

    /// Streams the parts through SHA-256 into a multipart upload of `key`, completed only if
    /// the digest is `expected` (aborted otherwise): the digest and size read.
    async fn upload_verified(
        &self,
        parts: &[Part],
        key: &Path,
        expected: &Digest,
    ) -> Result<(Digest, u64)> {
        if parts.iter().all(|p| p.size == 0) {
            // A multipart upload needs a part: the empty blob is one PUT.
            let (actual, size) = self.hash_parts(parts, None).await?;
            if actual == *expected {
                self.store
                    .put(key, PutPayload::default())
                    .await
                    .map_err(io_err)?;
            }
            return Ok((actual, size));
        }
        let upload = self.store.put_multipart(key).await.map_err(io_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        match self.hash_parts(parts, Some(&mut w)).await {
            Ok((actual, size)) if actual == *expected => {
                w.finish().await.map_err(io_err)?;
                Ok((actual, size))
            }
            Ok(other) => {
                let _ = w.abort().await;
                Ok(other)
            }
            Err(e) => {
                let _ = w.abort().await;
                Err(e)
            }
        }
    }

    /// `outcome`, unless it failed because another commit of the same digest (another core,
    /// a retried request) placed the object meanwhile: the digest names the bytes, so theirs
    /// are ours, and committing an existing blob is a no-op, never a failure. Some S3 servers
    /// answer the loser of two concurrent writes of one key with a 500.
    /// `placed` is what the caller would have had from a write of its own.
    async fn unless_placed<T>(
        &self,
        outcome: Result<T>,
        key: &Path,
        size: u64,
        placed: impl FnOnce() -> T,
    ) -> Result<T> {
        let Err(e) = outcome else {
            return outcome;
        };
        match self.store.head(key).await {
            Ok(meta) if meta.size == size => {
                tracing::info!(object = %key, error = %e,
                    "another commit placed this blob first; using it");
                Ok(placed())
            }
            _ => Err(e),
        }
    }

    /// The digest of a session of `size` bytes without reading it: from this process's
    /// running hash, or from the checkpoint of the core that wrote its first part. With
    /// `only` (the session's one part), the hash counts only if it was computed over that very
    /// object: a part overwritten by another writer (a server without conditional puts) has
    /// another ETag, and is read back.
    async fn known_digest(
        &self,
        id: &str,
        running: Option<RunningHash>,
        size: u64,
        only: Option<&Part>,
    ) -> Result<Option<Digest>> {
        let running = match running.filter(|r| r.end == size) {
            Some(r) => Some(r),
            None => self.load_checkpoint(&self.session_dir(id)?, size).await,
        };
        let Some(running) = running else {
            return Ok(None);
        };
        if let Some(part) = only {
            // Listings of some servers (s3s-fs) carry no ETag: then ask for the object's.
            let etag = match &part.etag {
                Some(e) => Some(e.clone()),
                None => self.store.head(&part.path).await.map_err(io_err)?.e_tag,
            };
            if !same_etag(running.etag.as_deref(), etag.as_deref()) {
                return Ok(None);
            }
        }
        Ok(Some(Digest::from_sha256(running.hasher.finalize().into())))
    }

    /// Commit under the session's lock.
    pub(super) async fn commit_locked(
        &self,
        id: &str,
        expected: &Digest,
        running: Option<RunningHash>,
    ) -> Result<u64> {
        let parts = self.parts(id).await?;
        let key = self.blob_key(expected);
        let stored = match self.store.head(&key).await {
            Ok(meta) => Some(meta.size),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(io_err(e)),
        };
        let (actual, size) = match (parts.as_slice(), stored) {
            // One part (the usual push): verify, then copy inside the object store.
            ([part], None) if part.size <= MAX_COPY => {
                let actual = match self
                    .known_digest(id, running, part.size, Some(part))
                    .await?
                {
                    Some(d) => d,
                    None => self.hash_parts(&parts, None).await?.0,
                };
                if actual == *expected {
                    let copied = self.store.copy(&part.path, &key).await.map_err(io_err);
                    self.unless_placed(copied, &key, part.size, || ()).await?;
                }
                (actual, part.size)
            }
            (_, Some(_)) => {
                let size = parts.iter().map(|p| p.size).sum();
                match self.known_digest(id, running, size, None).await? {
                    Some(d) => (d, size),
                    None => self.hash_parts(&parts, None).await?,
                }
            }
            (_, None) => {
                let size: u64 = parts.iter().map(|p| p.size).sum();
                let placed = self.upload_verified(&parts, &key, expected).await;
                self.unless_placed(placed, &key, size, || (expected.clone(), size))
                    .await?
            }
        };
        self.remove_session(id).await?;
        if actual != *expected {
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(size)
    }
}
