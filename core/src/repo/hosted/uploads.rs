//! Upload sessions of a hosted repository: the data lives in the BlobStore under the session
//! id, the record (image, client, size, last activity) in the MetadataStore, so any core that
//! shares both can continue a session another one started. A blob becomes visible only when
//! the BlobStore has verified and durably stored it; then it is linked into the image.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::HostedRepository;
use crate::metrics::{self, UploadCapLabels};
use crate::oci::{ImageName, RepoName};
use crate::repo::upload_cap::{admit, Admission};
use crate::repo::{RepoError, Result};
use crate::storage::metadata::UploadRecord;
use crate::storage::{StorageError, UploadInfo};

fn cap_metric(family: &Family<UploadCapLabels, Counter>, repo: &RepoName, reason: &str) {
    family
        .get_or_create(&UploadCapLabels {
            repository: repo.to_string(),
            reason: reason.to_owned(),
        })
        .inc();
}

/// Maps an upload-session storage error to what the client is told.
pub(super) fn upload_error(e: StorageError) -> RepoError {
    match e {
        StorageError::NotFound => RepoError::UploadUnknown,
        StorageError::OffsetMismatch { current, requested } => {
            RepoError::OffsetMismatch { current, requested }
        }
        StorageError::DigestMismatch { expected, actual } => RepoError::DigestMismatch {
            what: "uploaded content",
            expected,
            actual,
        },
        StorageError::UnsupportedDigest(d) => RepoError::UnsupportedDigest(d),
        StorageError::Body(e) => RepoError::BodyEnded(e.to_string()),
        other => RepoError::Storage(other),
    }
}

impl HostedRepository {
    /// The session's record, if it is open in this image.
    pub(super) async fn session(&self, image: &ImageName, id: &str) -> Result<UploadRecord> {
        match self.stores.meta.upload(id).await? {
            Some(u) if u.namespace == self.ns(image) => Ok(u),
            _ => Err(RepoError::UploadUnknown),
        }
    }

    pub(super) async fn end_session(&self, id: &str) -> Result<()> {
        self.stores.end_upload(id).await?;
        Ok(())
    }

    /// Applies the session cap for a new session of `client`: evicts an idle session if one
    /// must give way, or refuses with `Busy` when every candidate is active.
    pub(super) async fn make_room(&self, client: &str) -> Result<()> {
        let open: Vec<UploadInfo> = self
            .stores
            .meta
            .uploads(Some(&self.name))
            .await?
            .into_iter()
            .map(UploadInfo::from)
            .collect();
        match admit(&open, client, &self.upload_limits) {
            Admission::Open => Ok(()),
            Admission::Evict(id) => {
                let Some(victim) = open.iter().find(|u| u.id == id) else {
                    return Ok(());
                };
                let kind = if victim.empty { "empty" } else { "idle" };
                tracing::info!(repository = %self.name, session = %id, owner = %victim.client,
                    idle_ms = victim.idle.as_millis(), kind,
                    "evicted an upload session to make room");
                cap_metric(&metrics::global().upload_evictions, &self.name, kind);
                self.end_session(&id).await
            }
            Admission::Refuse {
                limit,
                reason,
                retry_after,
            } => {
                cap_metric(&metrics::global().upload_refusals, &self.name, limit);
                Err(RepoError::Busy {
                    message: format!(
                        "repository {}: {reason} (limit {limit}; retry in {} s)",
                        self.name,
                        retry_after.as_secs().max(1)
                    ),
                    retry_after,
                })
            }
        }
    }

    /// Reads back part of an upload session still being written (a proxy serves a blob to
    /// waiting clients while it arrives from the remote). Crate-internal and called per chunk,
    /// so the session's record is not looked up again: the caller opened the session itself.
    pub(crate) async fn upload_read(
        &self,
        id: &str,
        offset: u64,
        len: u64,
    ) -> Result<bytes::Bytes> {
        self.stores
            .blobs
            .upload_read(id, offset, len)
            .await
            .map_err(upload_error)
    }
}
