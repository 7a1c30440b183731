//! An in-memory BlobStore for tests: the model the contract suite checks the others against.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::{valid_upload_id, BlobStore};
use crate::oci::Digest;
use crate::storage::{ByteStream, Result, StorageError};

#[derive(Default)]
struct Inner {
    blobs: BTreeMap<Digest, Bytes>,
    uploads: HashMap<String, BytesMut>,
}

/// Everything in two maps behind one lock; fine for tests, not meant for production.
#[derive(Default)]
pub struct MemoryBlobStore {
    inner: Mutex<Inner>,
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic while holding the lock cannot leave the maps half-updated in a way that
        // matters for tests, so a poisoned lock is simply taken over.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.with(|i| i.blobs.get(digest).map(|b| b.len() as u64)))
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let blob = self.with(|i| i.blobs.get(digest).cloned());
        let blob = blob.ok_or(StorageError::NotFound)?;
        let end = start.saturating_add(len).min(blob.len() as u64) as usize;
        let piece = blob.slice((start as usize).min(end)..end);
        Ok(Box::pin(futures_util::stream::iter([Ok(piece)])))
    }

    async fn bytes(&self, digest: &Digest) -> Result<Bytes> {
        self.with(|i| i.blobs.get(digest).cloned())
            .ok_or(StorageError::NotFound)
    }

    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        let d = Digest::sha256_of(&bytes);
        self.with(|i| {
            i.blobs.entry(d.clone()).or_insert(bytes);
        });
        Ok(d)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        Ok(self.with(|i| i.blobs.remove(digest).is_some()))
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        Ok(self.with(|i| {
            i.blobs
                .keys()
                .filter(|d| after.is_none_or(|a| d.to_string() > a.to_string()))
                .take(limit)
                .cloned()
                .collect()
        }))
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        if !valid_upload_id(id) {
            return Err(StorageError::NotFound);
        }
        self.with(|i| i.uploads.insert(id.to_owned(), BytesMut::new()));
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<u64> {
        self.with(|i| i.uploads.get(id).map(|u| u.len() as u64))
            .ok_or(StorageError::NotFound)
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64> {
        let current = self.upload_size(id).await?;
        if let Some(requested) = offset {
            if requested != current {
                return Err(StorageError::OffsetMismatch { current, requested });
            }
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            let ok = self.with(|i| match i.uploads.get_mut(id) {
                Some(u) => {
                    u.extend_from_slice(&chunk);
                    true
                }
                None => false,
            });
            if !ok {
                return Err(StorageError::NotFound);
            }
        }
        self.upload_size(id).await
    }

    async fn upload_read(&self, id: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.with(|i| match i.uploads.get(id) {
            Some(u) if offset.saturating_add(len) <= u.len() as u64 => Ok(Bytes::copy_from_slice(
                &u[offset as usize..(offset + len) as usize],
            )),
            _ => Err(StorageError::NotFound),
        })
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        if !expected.is_storable() {
            return Err(StorageError::UnsupportedDigest(expected.clone()));
        }
        let data = self.with(|i| i.uploads.remove(id));
        let data = data.ok_or(StorageError::NotFound)?.freeze();
        let actual = Digest::sha256_of(&data);
        if &actual != expected {
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let size = data.len() as u64;
        self.with(|i| {
            i.blobs.entry(actual).or_insert(data);
        });
        Ok(size)
    }

    async fn upload_cancel(&self, id: &str) -> Result<()> {
        self.with(|i| i.uploads.remove(id));
        Ok(())
    }

    async fn uploads(&self) -> Result<Vec<String>> {
        let mut ids: Vec<String> = self.with(|i| i.uploads.keys().cloned().collect());
        ids.sort();
        Ok(ids)
    }
}
