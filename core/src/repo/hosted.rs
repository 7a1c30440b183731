//! Hosted repositories: content pushed by clients and stored locally.
//!
//! This is where the registry's rules live — a manifest must reference only blobs the image
//! can see, a digest reference must match the bytes, the write policy decides whether a tag may
//! move — while storage only keeps what it is given.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use super::upload_cap::{admit, Admission, UploadLimits};
use super::{client, Manifest, PushedManifest, RepoError, RepoKind, Repository, Result};
use crate::oci::manifest::{Ref, MAX_MANIFEST_BYTES};
use crate::oci::{
    Descriptor, Digest, ErrorCode, ImageName, ManifestInfo, Reference, RegistryError, RepoName, Tag,
};
use crate::storage::{ByteStream, Namespace, Storage, StorageError};

/// Whether and how clients may write, per repository (the names Nexus users know).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WritePolicy {
    /// Pushes may move tags to new manifests.
    #[default]
    AllowRedeploy,
    /// A tag, once pushed, cannot be pointed at another manifest.
    DenyRedeploy,
    /// No pushes or deletes at all.
    ReadOnly,
}

/// A repository whose content is pushed to it and kept in [`Storage`].
pub struct HostedRepository {
    name: RepoName,
    storage: Arc<dyn Storage>,
    policy: WritePolicy,
    /// The cap on open upload sessions (abandoned sessions are also swept separately).
    upload_limits: UploadLimits,
}

/// Maps an upload-session storage error to what the client is told.
fn upload_error(e: StorageError) -> RepoError {
    match e {
        StorageError::NotFound => client(
            ErrorCode::BlobUploadUnknown,
            "upload session is unknown, finished or cancelled",
        ),
        StorageError::OffsetMismatch { current, requested } => {
            RepoError::OffsetMismatch { current, requested }
        }
        StorageError::DigestMismatch { expected, actual } => client(
            ErrorCode::DigestInvalid,
            format!("uploaded content has digest {actual}, not {expected}"),
        ),
        StorageError::UnsupportedDigest(d) => client(
            ErrorCode::DigestInvalid,
            format!("digest {d} uses an unsupported algorithm; use sha256"),
        ),
        StorageError::Body(e) => client(
            ErrorCode::BlobUploadInvalid,
            format!("request body ended early: {e}"),
        ),
        other => RepoError::Storage(other),
    }
}

impl HostedRepository {
    pub fn new(name: RepoName, storage: Arc<dyn Storage>, policy: WritePolicy) -> Self {
        HostedRepository {
            name,
            storage,
            policy,
            upload_limits: UploadLimits::unlimited(),
        }
    }

    /// Caps the open upload sessions of this repository (see `upload_cap`).
    pub fn with_upload_limits(mut self, limits: UploadLimits) -> Self {
        self.upload_limits = limits;
        self
    }

    /// Applies the session cap for a new session of `client`: evicts an idle session if one
    /// must give way, or refuses with `Busy` when every candidate is active.
    async fn make_room(&self, client: &str) -> Result<()> {
        let open: Vec<_> = self
            .storage
            .uploads()
            .await?
            .into_iter()
            .filter(|u| u.namespace.repo == self.name)
            .collect();
        match admit(&open, client, &self.upload_limits) {
            Admission::Open => Ok(()),
            Admission::Evict(id) => {
                let Some(victim) = open.iter().find(|u| u.id == id) else {
                    return Ok(());
                };
                tracing::info!(repository = %self.name, session = %id, owner = %victim.client,
                    idle_s = victim.idle.as_secs(), "evicted an idle upload session to make room");
                match self.storage.upload_cancel(&victim.namespace, &id).await {
                    Ok(()) | Err(StorageError::NotFound) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Admission::Refuse {
                reason,
                retry_after,
            } => Err(RepoError::Busy {
                message: format!("repository {}: {reason}", self.name),
                retry_after,
            }),
        }
    }

    fn ns(&self, image: &ImageName) -> Namespace {
        Namespace::new(self.name.clone(), image.clone())
    }

    fn writable(&self) -> Result<()> {
        if self.policy == WritePolicy::ReadOnly {
            return Err(client(
                ErrorCode::Denied,
                format!("repository {} is read-only", self.name),
            ));
        }
        Ok(())
    }

    async fn resolve(&self, ns: &Namespace, reference: &Reference) -> Result<Digest> {
        match reference {
            Reference::Digest(d) => Ok(d.clone()),
            Reference::Tag(t) => self.storage.tag_get(ns, t).await?.ok_or_else(|| {
                client(
                    ErrorCode::ManifestUnknown,
                    format!("tag {t} is unknown in {}", ns.image),
                )
            }),
        }
    }

    /// Every blob and child manifest the new manifest names must already be in the image, with
    /// the size the manifest gives (a wrong size would make every client fail its download).
    async fn check_references(&self, ns: &Namespace, info: &ManifestInfo) -> Result<()> {
        for blob in &info.blobs {
            let stored = if self.storage.blob_linked(ns, &blob.digest).await? {
                self.storage.blob_size(&blob.digest).await?
            } else {
                None
            };
            check_ref(ns, blob, stored, "blob")?;
        }
        for child in &info.children {
            let stored = match self.storage.manifest_media_type(ns, &child.digest).await? {
                Some(_) => self.storage.blob_size(&child.digest).await?,
                None => None,
            };
            check_ref(ns, child, stored, "manifest")?;
        }
        Ok(())
    }

    /// Stores a checked manifest: bytes, link, tag and referrer entry. The one place a manifest
    /// becomes visible, shared by pushes and a proxy's cache.
    async fn store_manifest(
        &self,
        ns: &Namespace,
        digest: &Digest,
        bytes: Bytes,
        info: &ManifestInfo,
        tag: Option<&Tag>,
    ) -> Result<()> {
        let size = bytes.len() as i64;
        self.storage.blob_put(bytes).await?;
        self.storage
            .manifest_link(ns, digest, &info.media_type)
            .await?;
        if let Some(t) = tag {
            self.storage.tag_set(ns, t, digest).await?;
        }
        if let Some(subject) = &info.subject {
            let descriptor = Descriptor {
                media_type: info.media_type.clone(),
                digest: digest.to_string(),
                size,
                artifact_type: info.artifact_type.clone(),
                annotations: info.annotations.clone(),
                urls: None,
                platform: None,
            };
            self.storage.referrer_add(ns, subject, &descriptor).await?;
        }
        Ok(())
    }

    /// Keeps a manifest that came from elsewhere (a proxy's remote), with its tag if any; the
    /// caller has parsed it. Unlike a push, neither the write policy nor the referenced blobs
    /// are checked: a cache holds a manifest before the blobs it names are pulled through.
    pub(crate) async fn cache_manifest(
        &self,
        image: &ImageName,
        tag: Option<&Tag>,
        bytes: Bytes,
        info: &ManifestInfo,
    ) -> Result<Manifest> {
        let digest = Digest::sha256_of(&bytes);
        self.store_manifest(&self.ns(image), &digest, bytes.clone(), info, tag)
            .await?;
        Ok(Manifest {
            digest,
            media_type: info.media_type.clone(),
            bytes,
        })
    }

    /// Reads back part of an upload session still being written (a proxy serves a blob to
    /// waiting clients while it arrives from the remote).
    pub(crate) async fn upload_read(
        &self,
        image: &ImageName,
        id: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes> {
        self.storage
            .upload_read(&self.ns(image), id, offset, len)
            .await
            .map_err(upload_error)
    }
}

/// `MANIFEST_BLOB_UNKNOWN` for a reference to nothing; `MANIFEST_INVALID` for a wrong size.
fn check_ref(ns: &Namespace, r: &Ref, stored: Option<u64>, what: &str) -> Result<()> {
    let detail = serde_json::json!({ "digest": r.digest.to_string() });
    match stored {
        None => Err(RepoError::Client(
            RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!(
                    "manifest references {what} {}, which is not in {}",
                    r.digest, ns.image
                ),
            )
            .with_detail(detail),
        )),
        Some(size) if size != r.size => Err(RepoError::Client(
            RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "manifest gives {what} {} a size of {}, but it has {size} bytes",
                    r.digest, r.size
                ),
            )
            .with_detail(detail),
        )),
        Some(_) => Ok(()),
    }
}

#[async_trait]
impl Repository for HostedRepository {
    fn name(&self) -> &RepoName {
        &self.name
    }

    fn kind(&self) -> RepoKind {
        RepoKind::Hosted
    }

    async fn blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64> {
        let ns = self.ns(image);
        let unknown = || client(ErrorCode::BlobUnknown, format!("blob {digest} is unknown"));
        if !self.storage.blob_linked(&ns, digest).await? {
            return Err(unknown());
        }
        self.storage.blob_size(digest).await?.ok_or_else(unknown)
    }

    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        self.blob_size(image, digest).await?;
        match self.storage.blob_read(digest, start, len).await {
            Err(StorageError::NotFound) => Err(client(
                ErrorCode::BlobUnknown,
                format!("blob {digest} is unknown"),
            )),
            other => Ok(other?),
        }
    }

    async fn blob_delete(&self, image: &ImageName, digest: &Digest) -> Result<()> {
        self.writable()?;
        if self.storage.unlink_blob(&self.ns(image), digest).await? {
            Ok(())
        } else {
            Err(client(
                ErrorCode::BlobUnknown,
                format!("blob {digest} is unknown"),
            ))
        }
    }

    async fn blob_mount(
        &self,
        image: &ImageName,
        digest: &Digest,
        from: &ImageName,
    ) -> Result<bool> {
        self.writable()?;
        let source = self.ns(from);
        if !self.storage.blob_linked(&source, digest).await?
            || self.storage.blob_size(digest).await?.is_none()
        {
            return Ok(false);
        }
        self.storage.link_blob(&self.ns(image), digest).await?;
        Ok(true)
    }

    async fn upload_start(&self, image: &ImageName, client: &str) -> Result<String> {
        self.writable()?;
        if self.upload_limits.max_sessions != usize::MAX {
            self.make_room(client).await?;
        }
        Ok(self.storage.upload_create(&self.ns(image), client).await?)
    }

    async fn upload_size(&self, image: &ImageName, id: &str) -> Result<u64> {
        self.storage
            .upload_size(&self.ns(image), id)
            .await
            .map_err(upload_error)
    }

    async fn upload_append(
        &self,
        image: &ImageName,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.writable()?;
        self.storage
            .upload_append(&self.ns(image), id, offset, body)
            .await
            .map_err(upload_error)
    }

    async fn upload_finish(&self, image: &ImageName, id: &str, digest: &Digest) -> Result<u64> {
        self.writable()?;
        self.storage
            .upload_commit(&self.ns(image), id, digest)
            .await
            .map_err(upload_error)
    }

    async fn upload_cancel(&self, image: &ImageName, id: &str) -> Result<()> {
        self.storage
            .upload_cancel(&self.ns(image), id)
            .await
            .map_err(upload_error)
    }

    async fn manifest(&self, image: &ImageName, reference: &Reference) -> Result<Manifest> {
        let ns = self.ns(image);
        let digest = self.resolve(&ns, reference).await?;
        let unknown = || {
            client(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference} is unknown in {image}"),
            )
        };
        let media_type = self
            .storage
            .manifest_media_type(&ns, &digest)
            .await?
            .ok_or_else(unknown)?;
        let bytes = match self.storage.blob_bytes(&digest).await {
            Err(StorageError::NotFound) => return Err(unknown()),
            other => other?,
        };
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    async fn manifest_put(
        &self,
        image: &ImageName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<PushedManifest> {
        self.writable()?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RepoError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let info = ManifestInfo::parse(&bytes, content_type)
            .map_err(|e| client(ErrorCode::ManifestInvalid, e.to_string()))?;
        let digest = Digest::sha256_of(&bytes);
        let ns = self.ns(image);
        match reference {
            Reference::Digest(d) if d != &digest => {
                return Err(client(
                    ErrorCode::DigestInvalid,
                    format!("manifest bytes have digest {digest}, not {d}"),
                ))
            }
            Reference::Tag(t) if self.policy == WritePolicy::DenyRedeploy => {
                if let Some(old) = self.storage.tag_get(&ns, t).await? {
                    if old != digest {
                        return Err(client(
                            ErrorCode::Denied,
                            format!(
                                "tag {t} already points at {old} and repository {} denies redeploy",
                                self.name
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
        self.check_references(&ns, &info).await?;
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        self.store_manifest(&ns, &digest, bytes, &info, tag).await?;
        Ok(PushedManifest {
            digest,
            subject: info.subject,
        })
    }

    async fn manifest_delete(&self, image: &ImageName, reference: &Reference) -> Result<()> {
        self.writable()?;
        let ns = self.ns(image);
        let unknown = || {
            client(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference} is unknown in {image}"),
            )
        };
        let digest = match reference {
            Reference::Tag(t) => {
                return if self.storage.tag_delete(&ns, t).await? {
                    Ok(())
                } else {
                    Err(unknown())
                };
            }
            Reference::Digest(d) => d,
        };
        if self
            .storage
            .manifest_media_type(&ns, digest)
            .await?
            .is_none()
        {
            return Err(unknown());
        }
        if let Ok(bytes) = self.storage.blob_bytes(digest).await {
            if let Ok(Some(subject)) = ManifestInfo::parse(&bytes, None).map(|i| i.subject) {
                self.storage.referrer_remove(&ns, &subject, digest).await?;
            }
        }
        // Tags pointing at the deleted manifest would dangle: remove them with it.
        for tag in self.storage.tags(&ns).await?.unwrap_or_default() {
            let Ok(tag) = tag.parse() else { continue };
            if self.storage.tag_get(&ns, &tag).await?.as_ref() == Some(digest) {
                self.storage.tag_delete(&ns, &tag).await?;
            }
        }
        self.storage.manifest_unlink(&ns, digest).await?;
        Ok(())
    }

    async fn tags(&self, image: &ImageName) -> Result<Vec<String>> {
        self.storage.tags(&self.ns(image)).await?.ok_or_else(|| {
            client(
                ErrorCode::NameUnknown,
                format!("repository {image} is not known to {}", self.name),
            )
        })
    }

    async fn images(&self) -> Result<Vec<ImageName>> {
        Ok(self.storage.images(&self.name).await?)
    }

    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.storage.referrers(&self.ns(image), subject).await?)
    }
}
