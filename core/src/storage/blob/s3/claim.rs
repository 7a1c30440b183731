//! Claims on upload offsets (see the parent module's layout): before writing a part, the
//! writer creates `<offset>.claim` with `If-None-Match: *`, so of two appends at one offset
//! exactly one wins. While the part streams in, the writer rewrites its claim to show it is
//! alive; a claim left stale with no part at its offset belongs to a writer that died (a core
//! killed mid-PATCH), and the next append takes the offset over.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};

use super::{io_err, S3BlobStore};
use crate::storage::blob::BlobStore as _;
use crate::storage::{ByteStream, Result, StorageError};

/// How often a writer rewrites its claim while its append streams in, to show it is alive.
const CLAIM_REFRESH: std::time::Duration = std::time::Duration::from_secs(3);
/// A claim not rewritten for this long, with no part at its offset, was left by a writer that
/// died (a core killed mid-PATCH): the next append may take the offset over.
const CLAIM_STALE_MS: i64 = 10_000;

impl S3BlobStore {
    /// Takes offset `at` of a session for this append (`<name>.claim`, created only if absent);
    /// another writer holding it is an `OffsetMismatch`. `None` when the server cannot create
    /// conditionally (`conditional_put: false`): then only this process's lock guards it.
    pub(super) async fn claim(
        &self,
        id: &str,
        dir: &Path,
        name: &str,
        at: u64,
    ) -> Result<Option<Path>> {
        if !self.claims {
            return Ok(None);
        }
        let path = dir.clone().join(format!("{name}.claim"));
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        for attempt in 0..2 {
            let put = self
                .store
                .put_opts(&path, PutPayload::default(), create.clone());
            match put.await {
                Ok(_) => return Ok(Some(path)),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. })
                    if attempt == 0 && self.abandoned(&path, &dir.clone().join(name)).await =>
                {
                    tracing::warn!(
                        upload = id,
                        offset = at,
                        "taking over an append whose writer stopped (its core died mid-request)"
                    );
                    let _ = self.store.delete(&path).await;
                }
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {
                    return Err(StorageError::OffsetMismatch {
                        current: self.upload_size(id).await?,
                        requested: at,
                    })
                }
                Err(e) => return Err(io_err(e)),
            }
        }
        Err(StorageError::OffsetMismatch {
            current: self.upload_size(id).await?,
            requested: at,
        })
    }

    /// Whether the claim at `claim` was left by a writer that stopped: not rewritten for
    /// `CLAIM_STALE_MS` and no part written at its offset. (Two appends taking one stale
    /// offset over at once could both write it; the commit's digest check still stands
    /// between that and a visible blob.)
    async fn abandoned(&self, claim: &Path, part: &Path) -> bool {
        let Ok(meta) = self.store.head(claim).await else {
            return false;
        };
        let now = crate::storage::metadata::now_ms();
        let stale = now.saturating_sub(meta.last_modified.timestamp_millis()) > CLAIM_STALE_MS;
        stale
            && matches!(
                self.store.head(part).await,
                Err(object_store::Error::NotFound { .. })
            )
    }

    /// Writes a part while rewriting its claim every `CLAIM_REFRESH`, so other cores can
    /// tell a slow append from one whose writer died.
    pub(super) async fn write_claimed(
        &self,
        claim: Option<&Path>,
        path: &Path,
        body: ByteStream,
        hasher: Option<&mut super::Hasher>,
    ) -> Result<super::Written> {
        let write = self.write_part(path, body, hasher);
        let Some(claim) = claim else {
            return write.await;
        };
        tokio::pin!(write);
        loop {
            tokio::select! {
                done = &mut write => return done,
                _ = tokio::time::sleep(CLAIM_REFRESH) => {
                    if let Err(e) = self.store.put(claim, PutPayload::default()).await {
                        tracing::warn!(error = %e, "refreshing an append's claim failed");
                    }
                }
            }
        }
    }
}
