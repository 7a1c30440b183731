//! One-time adoption of what metadata version 1 did not track: every file in the BlobStore
//! gets a `blobs` row with its size. Version 1 left the bytes of deleted manifests and
//! unlinked blobs behind with nothing pointing at them; once adopted, the collector can see
//! (and remove) them, and usage counts every byte. Idempotent: cores starting together, or a
//! crash halfway, only repeat inserts that change nothing.

use super::metadata::MetadataError;
use super::{StorageError, Stores};
use crate::oci::Digest;

/// Files listed per page.
const PAGE: usize = 1000;

/// Why adoption failed (start-up stops: the collector must not run on half a picture).
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("listing blobs: {0}")]
    Blobs(#[from] StorageError),
    #[error("{0}")]
    Metadata(#[from] MetadataError),
}

/// Adopts the BlobStore's files if not done yet, and fills in sizes version 1 did not record.
pub async fn if_needed(stores: &Stores) -> Result<(), AdoptError> {
    if stores.meta.blobs_adopted().await? {
        return Ok(());
    }
    let mut after: Option<Digest> = None;
    let mut adopted = 0usize;
    loop {
        let page = stores.blobs.list(after.as_ref(), PAGE).await?;
        let mut found = Vec::with_capacity(page.len());
        for d in &page {
            if let Some(size) = stores.blobs.stat(d).await? {
                found.push((d.clone(), size));
            }
        }
        let last = page.len() < PAGE;
        adopted += found.len();
        stores.meta.adopt_blobs(&found, false).await?;
        if last {
            break;
        }
        after = page.last().cloned();
    }
    // Rows migrated from links whose files are missing keep a NULL size; nothing to stat.
    loop {
        let unknown = stores.meta.blobs_without_size(PAGE).await?;
        let mut filled = 0;
        for d in &unknown {
            if let Some(size) = stores.blobs.stat(d).await? {
                stores.meta.set_blob_size(d, size).await?;
                filled += 1;
            }
        }
        if filled == 0 {
            break;
        }
    }
    stores.meta.adopt_blobs(&[], true).await?;
    if adopted > 0 {
        tracing::info!(
            blobs = adopted,
            "blob records adopted from the blob store (metadata version 2)"
        );
    }
    Ok(())
}
