//! Upload sessions of a hosted repository: the data lives in the BlobStore under the session
//! id, the record (image, client, size, last activity) in the MetadataStore, so any core that
//! shares both can continue a session another one started. A blob becomes visible only when
//! the BlobStore has verified and durably stored it; then it is linked into the image.

use super::HostedRepository;
use crate::oci::{Digest, ErrorCode, ImageName};
use crate::repo::upload_cap::{admit, Admission};
use crate::repo::{client, RepoError, Result};
use crate::storage::blob::new_upload_id;
use crate::storage::metadata::{now_ms, UploadRecord};
use crate::storage::{ByteStream, StorageError, UploadInfo};

/// Maps an upload-session storage error to what the client is told.
pub(super) fn upload_error(e: StorageError) -> RepoError {
    match e {
        StorageError::NotFound => unknown_session(),
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

fn unknown_session() -> RepoError {
    client(
        ErrorCode::BlobUploadUnknown,
        "upload session is unknown, finished or cancelled",
    )
}

impl HostedRepository {
    /// The session's record, if it is open in this image.
    pub(super) async fn session(&self, image: &ImageName, id: &str) -> Result<UploadRecord> {
        match self.stores.meta.upload(id).await? {
            Some(u) if u.namespace == self.ns(image) => Ok(u),
            _ => Err(unknown_session()),
        }
    }

    pub(super) async fn start_upload(&self, image: &ImageName, client: &str) -> Result<String> {
        self.writable()?;
        self.check_quota(0).await?;
        if self.upload_limits.max_sessions != usize::MAX {
            self.make_room(client).await?;
        }
        let id = new_upload_id();
        self.stores.blobs.upload_create(&id).await?;
        let record = UploadRecord {
            id: id.clone(),
            namespace: self.ns(image),
            client: client.to_owned(),
            size: 0,
            updated_at: now_ms(),
        };
        if let Err(e) = self.stores.meta.upload_open(&record).await {
            let _ = self.stores.blobs.upload_cancel(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    pub(super) async fn append_upload(
        &self,
        image: &ImageName,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.writable()?;
        self.session(image, id).await?;
        let appended = self.stores.blobs.upload_append(id, offset, body).await;
        // Bytes received before a broken body are kept: record them either way.
        let size = match &appended {
            Ok(size) => Some(*size),
            Err(StorageError::Body(_)) => self.stores.blobs.upload_size(id).await.ok(),
            Err(_) => None,
        };
        if let Some(size) = size {
            self.stores.meta.upload_progress(id, size).await?;
        }
        appended.map_err(upload_error)
    }

    pub(super) async fn finish_upload(
        &self,
        image: &ImageName,
        id: &str,
        digest: &Digest,
    ) -> Result<u64> {
        self.writable()?;
        self.session(image, id).await?;
        if !digest.is_storable() {
            return Err(upload_error(StorageError::UnsupportedDigest(
                digest.clone(),
            )));
        }
        if self.lifecycle.quota.is_some() {
            let size = self
                .stores
                .blobs
                .upload_size(id)
                .await
                .map_err(upload_error)?;
            if let Err(e) = self.check_quota(size).await {
                self.cancel_upload(id).await?;
                return Err(e);
            }
        }
        // The record first, so the collector leaves the bytes alone while they are placed.
        self.stores.meta.blob_intent(digest).await?;
        let committed = self.stores.blobs.upload_commit(id, digest).await;
        // Committed or discarded (a digest mismatch): the session is over either way.
        if !matches!(committed, Err(StorageError::Io(_))) {
            self.stores.meta.upload_close(id).await?;
        }
        let size = committed.map_err(upload_error)?;
        self.stores
            .meta
            .blob_placed(Some(&self.ns(image)), digest, size)
            .await?;
        self.note_stored(size);
        Ok(size)
    }

    pub(super) async fn cancel_upload(&self, id: &str) -> Result<()> {
        self.stores.end_upload(id).await?;
        Ok(())
    }

    /// Applies the session cap for a new session of `client`: evicts an idle session if one
    /// must give way, or refuses with `Busy` when every candidate is active.
    async fn make_room(&self, client: &str) -> Result<()> {
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
                tracing::info!(repository = %self.name, session = %id, owner = %victim.client,
                    idle_s = victim.idle.as_secs(), "evicted an idle upload session to make room");
                self.cancel_upload(&id).await
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
