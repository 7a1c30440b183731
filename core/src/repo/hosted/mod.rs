//! Hosted repositories: content pushed by clients and kept in the stores.
//!
//! This is where the registry's rules live — a manifest must reference only blobs the image
//! can see, with their true sizes; a digest reference must match the bytes; the write policy
//! decides whether a tag may move — while the stores only keep what they are given. Bytes go
//! to the BlobStore, everything about them to the MetadataStore; this module joins the two.
//!
//! # Layout
//! - `mod.rs`: the repository, blob reads, links and mounts, listings.
//! - `uploads.rs`: upload sessions (data in the BlobStore, the record in the MetadataStore)
//!   and the session cap.
//! - `manifests.rs`: manifest pushes (checked, then one metadata transaction), reads, deletes.

mod manifests;
mod uploads;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use super::upload_cap::UploadLimits;
use crate::lifecycle::RepoLifecycle;

/// How long a measured usage is trusted by the quota check.
const USAGE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
use super::{client, Manifest, PushedManifest, RepoError, RepoKind, Repository, Result};
use crate::oci::{Descriptor, Digest, ErrorCode, ImageName, Reference, RepoName};
use crate::storage::metadata::Page;
use crate::storage::{ByteStream, Namespace, StorageError, Stores};

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

/// A repository whose content is pushed to it and kept in the [`Stores`].
pub struct HostedRepository {
    name: RepoName,
    stores: Stores,
    policy: WritePolicy,
    /// The cap on open upload sessions (abandoned sessions are also swept separately).
    upload_limits: UploadLimits,
    /// Immutable tags and the quota.
    lifecycle: RepoLifecycle,
    /// Usage as last measured, and when (the quota check must not query per chunk).
    usage: std::sync::Mutex<Option<(std::time::Instant, u64)>>,
}

impl HostedRepository {
    pub fn new(name: RepoName, stores: Stores, policy: WritePolicy) -> Self {
        HostedRepository {
            name,
            stores,
            policy,
            upload_limits: UploadLimits::unlimited(),
            lifecycle: RepoLifecycle::default(),
            usage: std::sync::Mutex::new(None),
        }
    }

    /// Applies immutable tags and the quota.
    pub fn with_lifecycle(mut self, lifecycle: RepoLifecycle) -> Self {
        self.lifecycle = lifecycle;
        self
    }

    fn immutable(&self, tag: &crate::oci::Tag) -> Option<&regex::Regex> {
        self.lifecycle.immutable(tag.as_str())
    }

    fn immutable_str(&self, tag: &str) -> Option<&regex::Regex> {
        self.lifecycle.immutable(tag)
    }

    /// Refuses to take `adding` more bytes beyond the quota (`DENIED`, naming it). Usage is
    /// measured at most every few seconds; bytes stored since are added as they come.
    async fn check_quota(&self, adding: u64) -> Result<()> {
        let Some(quota) = self.lifecycle.quota else {
            return Ok(());
        };
        let cached = self.usage.lock().ok().and_then(|u| *u);
        let used = match cached {
            Some((at, bytes)) if at.elapsed() < USAGE_TTL => bytes,
            _ => {
                let bytes = self.stores.meta.usage(&self.name).await?.bytes;
                if let Ok(mut u) = self.usage.lock() {
                    *u = Some((std::time::Instant::now(), bytes));
                }
                bytes
            }
        };
        if used.saturating_add(adding) > quota {
            return Err(client(
                ErrorCode::Denied,
                format!(
                    "repository {} is over its quota of {} ({used} bytes used, this needs {adding} more); delete images or ask for a larger quota",
                    self.name,
                    berth_config::ByteSize(quota)
                ),
            ));
        }
        Ok(())
    }

    /// Counts bytes just stored against the quota until usage is measured again.
    fn note_stored(&self, bytes: u64) {
        if let Ok(mut u) = self.usage.lock() {
            if let Some((_, used)) = u.as_mut() {
                *used = used.saturating_add(bytes);
            }
        }
    }

    /// Caps the open upload sessions of this repository (see `upload_cap`).
    pub fn with_upload_limits(mut self, limits: UploadLimits) -> Self {
        self.upload_limits = limits;
        self
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

    fn blob_unknown(digest: &Digest) -> RepoError {
        client(ErrorCode::BlobUnknown, format!("blob {digest} is unknown"))
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
        if !self
            .stores
            .meta
            .blob_linked(&self.ns(image), digest)
            .await?
        {
            return Err(Self::blob_unknown(digest));
        }
        self.stores
            .blobs
            .stat(digest)
            .await?
            .ok_or_else(|| Self::blob_unknown(digest))
    }

    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        // The link decides visibility; a missing blob shows as NotFound from the read itself.
        if !self
            .stores
            .meta
            .blob_linked(&self.ns(image), digest)
            .await?
        {
            return Err(Self::blob_unknown(digest));
        }
        match self.stores.blobs.read(digest, start, len).await {
            Err(StorageError::NotFound) => Err(Self::blob_unknown(digest)),
            other => Ok(other?),
        }
    }

    async fn blob_delete(&self, image: &ImageName, digest: &Digest) -> Result<()> {
        self.writable()?;
        if self
            .stores
            .meta
            .unlink_blob(&self.ns(image), digest)
            .await?
        {
            Ok(())
        } else {
            Err(Self::blob_unknown(digest))
        }
    }

    async fn blob_mount(
        &self,
        image: &ImageName,
        digest: &Digest,
        from: &ImageName,
    ) -> Result<bool> {
        self.writable()?;
        // The bytes are checked too: a collection that crashed after deleting bytes but
        // before committing leaves a record whose bytes are gone (its re-run removes it).
        if !self.stores.meta.blob_linked(&self.ns(from), digest).await?
            || self.stores.blobs.stat(digest).await?.is_none()
        {
            return Ok(false);
        }
        Ok(self.stores.meta.link_blob(&self.ns(image), digest).await?)
    }

    async fn upload_start(&self, image: &ImageName, client: &str) -> Result<String> {
        self.start_upload(image, client).await
    }

    async fn upload_size(&self, image: &ImageName, id: &str) -> Result<u64> {
        self.session(image, id).await?;
        self.stores
            .blobs
            .upload_size(id)
            .await
            .map_err(uploads::upload_error)
    }

    async fn upload_append(
        &self,
        image: &ImageName,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.append_upload(image, id, offset, body).await
    }

    async fn upload_finish(&self, image: &ImageName, id: &str, digest: &Digest) -> Result<u64> {
        self.finish_upload(image, id, digest).await
    }

    async fn upload_cancel(&self, image: &ImageName, id: &str) -> Result<()> {
        self.session(image, id).await?;
        self.cancel_upload(id).await
    }

    async fn manifest(&self, image: &ImageName, reference: &Reference) -> Result<Manifest> {
        self.read_manifest(image, reference).await
    }

    async fn manifest_put(
        &self,
        image: &ImageName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        actor: &str,
    ) -> Result<PushedManifest> {
        self.push_manifest(image, reference, content_type, bytes, actor)
            .await
    }

    async fn manifest_delete(
        &self,
        image: &ImageName,
        reference: &Reference,
        actor: &str,
    ) -> Result<()> {
        self.delete_manifest(image, reference, actor).await
    }

    async fn tags(&self, image: &ImageName, page: &Page) -> Result<Vec<String>> {
        self.stores
            .meta
            .tags(&self.ns(image), page)
            .await?
            .ok_or_else(|| {
                client(
                    ErrorCode::NameUnknown,
                    format!("repository {image} is not known to {}", self.name),
                )
            })
    }

    async fn images(&self, page: &Page) -> Result<Vec<ImageName>> {
        Ok(self.stores.meta.images(&self.name, page).await?)
    }

    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.stores.meta.referrers(&self.ns(image), subject).await?)
    }
}
