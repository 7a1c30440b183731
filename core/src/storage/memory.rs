//! An in-memory backend: the reference implementation of the storage contract, used by tests
//! and as the model any new backend is checked against (`suite.rs` runs on both).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::{ByteStream, Namespace, Result, Storage, StorageError, UploadInfo};
use crate::oci::{Descriptor, Digest, ImageName, RepoName, Tag};

#[derive(Default)]
struct NsData {
    layers: BTreeSet<Digest>,
    manifests: BTreeMap<Digest, String>,
    tags: BTreeMap<String, Digest>,
    referrers: BTreeMap<Digest, BTreeMap<Digest, Descriptor>>,
}

struct Upload {
    owner: Namespace,
    client: String,
    data: BytesMut,
    touched: std::time::Instant,
}

#[derive(Default)]
struct Inner {
    blobs: HashMap<Digest, Bytes>,
    namespaces: HashMap<Namespace, NsData>,
    uploads: HashMap<String, Upload>,
}

/// Everything in one map behind one lock; fine for tests, not meant for production.
#[derive(Default)]
pub struct MemoryStorage {
    inner: Mutex<Inner>,
}

impl MemoryStorage {
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
impl Storage for MemoryStorage {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self.with(|i| i.blobs.get(digest).map(|b| b.len() as u64)))
    }

    async fn blob_read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let blob = self.with(|i| i.blobs.get(digest).cloned());
        let blob = blob.ok_or(StorageError::NotFound)?;
        let (s, e) = (start as usize, (start + len) as usize);
        if e > blob.len() {
            return Err(StorageError::NotFound);
        }
        let part = blob.slice(s..e);
        Ok(Box::pin(futures_util::stream::iter([Ok(part)])))
    }

    async fn blob_bytes(&self, digest: &Digest) -> Result<Bytes> {
        self.with(|i| i.blobs.get(digest).cloned())
            .ok_or(StorageError::NotFound)
    }

    async fn blob_put(&self, bytes: Bytes) -> Result<Digest> {
        let d = Digest::sha256_of(&bytes);
        self.with(|i| {
            i.blobs.entry(d.clone()).or_insert(bytes);
        });
        Ok(d)
    }

    async fn link_blob(&self, ns: &Namespace, digest: &Digest) -> Result<()> {
        self.with(|i| {
            let data = i.namespaces.entry(ns.clone()).or_default();
            data.layers.insert(digest.clone());
        });
        Ok(())
    }

    async fn blob_linked(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        Ok(self.with(|i| {
            i.namespaces
                .get(ns)
                .is_some_and(|n| n.layers.contains(digest))
        }))
    }

    async fn unlink_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        Ok(self.with(|i| {
            i.namespaces
                .get_mut(ns)
                .is_some_and(|n| n.layers.remove(digest))
        }))
    }

    async fn upload_create(&self, ns: &Namespace, client: &str) -> Result<String> {
        let id = hex::encode(rand::random::<[u8; 16]>());
        self.with(|i| {
            i.uploads.insert(
                id.clone(),
                Upload {
                    owner: ns.clone(),
                    client: client.to_owned(),
                    data: BytesMut::new(),
                    touched: std::time::Instant::now(),
                },
            )
        });
        Ok(id)
    }

    async fn upload_size(&self, ns: &Namespace, id: &str) -> Result<u64> {
        self.with(|i| match i.uploads.get(id) {
            Some(u) if &u.owner == ns => Ok(u.data.len() as u64),
            _ => Err(StorageError::NotFound),
        })
    }

    async fn upload_append(
        &self,
        ns: &Namespace,
        id: &str,
        offset: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64> {
        let current = self.upload_size(ns, id).await?;
        if let Some(requested) = offset.filter(|&o| o != current) {
            return Err(StorageError::OffsetMismatch { current, requested });
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StorageError::Body)?;
            self.with(|i| match i.uploads.get_mut(id) {
                Some(u) => {
                    u.data.extend_from_slice(&chunk);
                    u.touched = std::time::Instant::now();
                    Ok(())
                }
                None => Err(StorageError::NotFound),
            })?;
        }
        self.upload_size(ns, id).await
    }

    async fn upload_commit(&self, ns: &Namespace, id: &str, expected: &Digest) -> Result<u64> {
        if !expected.is_storable() {
            return Err(StorageError::UnsupportedDigest(expected.clone()));
        }
        self.upload_size(ns, id).await?;
        let upload = self.with(|i| i.uploads.remove(id));
        let upload = upload.ok_or(StorageError::NotFound)?;
        let data = upload.data.freeze();
        let actual = Digest::sha256_of(&data);
        if &actual != expected {
            return Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let size = data.len() as u64;
        self.blob_put(data).await?;
        self.link_blob(ns, expected).await?;
        Ok(size)
    }

    async fn upload_cancel(&self, ns: &Namespace, id: &str) -> Result<()> {
        self.upload_size(ns, id).await?;
        self.with(|i| i.uploads.remove(id));
        Ok(())
    }

    async fn uploads(&self) -> Result<Vec<UploadInfo>> {
        Ok(self.with(|i| {
            i.uploads
                .iter()
                .map(|(id, u)| UploadInfo {
                    id: id.clone(),
                    namespace: u.owner.clone(),
                    client: u.client.clone(),
                    idle: u.touched.elapsed(),
                })
                .collect()
        }))
    }

    async fn upload_read(&self, ns: &Namespace, id: &str, offset: u64, len: u64) -> Result<Bytes> {
        self.with(|i| match i.uploads.get(id) {
            Some(u) if &u.owner == ns && offset + len <= u.data.len() as u64 => Ok(
                Bytes::copy_from_slice(&u.data[offset as usize..(offset + len) as usize]),
            ),
            _ => Err(StorageError::NotFound),
        })
    }

    async fn manifest_link(&self, ns: &Namespace, digest: &Digest, media_type: &str) -> Result<()> {
        self.with(|i| {
            let data = i.namespaces.entry(ns.clone()).or_default();
            data.manifests.insert(digest.clone(), media_type.to_owned());
        });
        Ok(())
    }

    async fn manifest_media_type(&self, ns: &Namespace, digest: &Digest) -> Result<Option<String>> {
        Ok(self.with(|i| {
            i.namespaces
                .get(ns)
                .and_then(|n| n.manifests.get(digest).cloned())
        }))
    }

    async fn manifest_unlink(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        Ok(self.with(|i| {
            i.namespaces
                .get_mut(ns)
                .is_some_and(|n| n.manifests.remove(digest).is_some())
        }))
    }

    async fn tag_get(&self, ns: &Namespace, tag: &Tag) -> Result<Option<Digest>> {
        Ok(self.with(|i| {
            i.namespaces
                .get(ns)
                .and_then(|n| n.tags.get(tag.as_str()).cloned())
        }))
    }

    async fn tag_set(&self, ns: &Namespace, tag: &Tag, digest: &Digest) -> Result<()> {
        self.with(|i| {
            let data = i.namespaces.entry(ns.clone()).or_default();
            data.tags.insert(tag.as_str().to_owned(), digest.clone());
        });
        Ok(())
    }

    async fn tag_delete(&self, ns: &Namespace, tag: &Tag) -> Result<bool> {
        Ok(self.with(|i| {
            i.namespaces
                .get_mut(ns)
                .is_some_and(|n| n.tags.remove(tag.as_str()).is_some())
        }))
    }

    async fn tags(&self, ns: &Namespace) -> Result<Option<Vec<String>>> {
        Ok(self.with(|i| {
            i.namespaces
                .get(ns)
                .map(|n| n.tags.keys().cloned().collect())
        }))
    }

    async fn referrer_add(
        &self,
        ns: &Namespace,
        subject: &Digest,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let referrer: Digest = descriptor
            .digest
            .parse()
            .map_err(|e| StorageError::Corrupt(format!("referrer digest: {e}")))?;
        self.with(|i| {
            let data = i.namespaces.entry(ns.clone()).or_default();
            data.referrers
                .entry(subject.clone())
                .or_default()
                .insert(referrer, descriptor.clone());
        });
        Ok(())
    }

    async fn referrer_remove(
        &self,
        ns: &Namespace,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        self.with(|i| {
            if let Some(r) = i
                .namespaces
                .get_mut(ns)
                .and_then(|n| n.referrers.get_mut(subject))
            {
                r.remove(referrer);
            }
        });
        Ok(())
    }

    async fn referrers(&self, ns: &Namespace, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.with(|i| {
            i.namespaces
                .get(ns)
                .and_then(|n| n.referrers.get(subject))
                .map(|r| r.values().cloned().collect())
                .unwrap_or_default()
        }))
    }

    async fn images(&self, repo: &RepoName) -> Result<Vec<ImageName>> {
        let mut names: Vec<ImageName> = self.with(|i| {
            i.namespaces
                .iter()
                .filter(|(ns, d)| &ns.repo == repo && !d.manifests.is_empty())
                .map(|(ns, _)| ns.image.clone())
                .collect()
        });
        names.sort();
        Ok(names)
    }
}
