//! Hosted repositories: content pushed by clients and kept in the stores.
//!
//! This is where the registry's rules live — a manifest must reference only blobs the image
//! can see, with their true sizes; a digest reference must match the bytes; the write policy
//! decides whether a tag may move — while the stores only keep what they are given. Bytes go
//! to the BlobStore, everything about them to the MetadataStore; this module joins the two.
//!
//! # Layout
//! - `mod.rs`: the repository, its write policy, quota and namespaces.
//! - `repository.rs`: the [`Repository`] trait — every act, each written once.
//! - `uploads.rs`: what upload sessions share (the session record, the session cap, storage
//!   errors read as meanings).
//! - `manifests.rs`: what manifest pushes share (the checks, then one metadata transaction
//!   that makes a manifest visible; the proxy's cache uses it too).

mod manifests;
mod repository;
mod uploads;

use serde::Deserialize;

use super::upload_cap::UploadLimits;
use super::{RepoError, Result};
use crate::lifecycle::RepoLifecycle;
use crate::oci::{Digest, ImageName, RepoName};
use crate::storage::{Namespace, Stores};

/// How long a measured usage is trusted by the quota check.
const USAGE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

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

    /// Refuses to take `adding` more bytes beyond the quota (denied, naming it). Usage is
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
            return Err(RepoError::Denied(
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
            return Err(RepoError::Denied(format!(
                "repository {} is read-only",
                self.name
            )));
        }
        Ok(())
    }

    /// The stores under this repository (a proxy over it coordinates fetches through them).
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// A blob is visible in an image only through the image's link to it.
    async fn visible(&self, image: &ImageName, digest: &Digest) -> Result<()> {
        match self
            .stores
            .meta
            .blob_linked(&self.ns(image), digest)
            .await?
        {
            true => Ok(()),
            false => Err(Self::blob_unknown(digest)),
        }
    }

    fn blob_unknown(digest: &Digest) -> RepoError {
        RepoError::BlobUnknown {
            digest: digest.clone(),
            remote: None,
        }
    }
}
