//! Online garbage collection: removes what no repository can reach any more while pushes and
//! pulls go on — no read-only window. Three steps, each a series of small transactions, so a
//! crash anywhere leaves a consistent store and a re-run finishes the job:
//! 1. deleted manifests past the undo window (never one a live manifest still names);
//! 2. links of blobs no manifest of their image names, untouched for the grace period (a push
//!    uploads its blobs before its manifest: the grace period is how long it may take);
//! 3. blob records nothing links or names, untouched for the grace period: each batch is
//!    claimed in a transaction, its bytes deleted, then committed (see
//!    [`crate::storage::metadata::lifecycle`] for why that is safe against a concurrent push
//!    of the same digest).
//!
//! Upload sessions are never touched: their data is not a blob until committed. Every removal
//! is an audit line (`berth_core::audit`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::oci::Digest;
use crate::storage::metadata::lifecycle::{Cursor, Cutoffs, Preview, Step};
use crate::storage::metadata::{now, now_ms, MetadataError};
use crate::storage::{Namespace, StorageError, Stores};

/// Rows per transaction: small enough that a push waiting on SQLite's writer waits
/// milliseconds, large enough that 100 000 blobs take a few hundred transactions.
const BATCH: usize = 500;
/// Blobs per claim: a claim holds its rows (on SQLite, the one writer) while their bytes are
/// deleted, so it is kept smaller than a batch of row deletions.
const CLAIM_BATCH: usize = 100;
/// Blob deletions in flight at once (an object store answers each with a round trip).
const DELETES_IN_FLIGHT: usize = 16;
/// Entries a dry run lists of each kind (the counts cover everything).
const PREVIEW_LIMIT: usize = 1000;

/// How the collector runs (the `gc` section of the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSettings {
    /// Scheduled collections; `None`: only on demand.
    pub interval: Option<Duration>,
    /// Content written or linked this recently is never collected.
    pub grace: Duration,
    /// Deleted manifests stay restorable this long.
    pub undo_window: Duration,
    /// Tag history is kept this long.
    pub history: Duration,
}

impl Default for GcSettings {
    fn default() -> Self {
        GcSettings {
            interval: Some(Duration::from_secs(24 * 3600)),
            grace: Duration::from_secs(3600),
            undo_window: Duration::from_secs(7 * 86_400),
            history: Duration::from_secs(90 * 86_400),
        }
    }
}

impl GcSettings {
    pub fn cutoffs(&self) -> Cutoffs {
        let now = now_ms();
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Cutoffs {
            deleted_before: now.saturating_sub(ms(self.undo_window)),
            touched_before: now.saturating_sub(ms(self.grace)),
        }
    }
}

/// What one collection did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Unix seconds.
    pub started_at: i64,
    pub millis: u64,
    pub manifests_removed: u64,
    pub links_removed: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
    /// Records whose bytes were already gone (a crashed collection's leftovers).
    pub blobs_already_gone: u64,
    pub history_events_removed: u64,
    /// A dry run's list of what would go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preview: Option<Preview>,
}

impl GcReport {
    /// The report as `berth-core gc` prints it: what went (or would go), then the totals.
    pub fn lines(&self) -> Vec<String> {
        let verb = if self.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let mut out = Vec::new();
        if let Some(p) = &self.preview {
            out.extend(
                p.manifests
                    .iter()
                    .map(|m| format!("{verb} deleted manifest {m}")),
            );
            out.extend(p.links.iter().map(|l| format!("{verb} blob link {l}")));
            out.extend(
                p.blobs
                    .iter()
                    .map(|(d, size)| format!("{verb} blob {d} ({size} bytes)")),
            );
            if p.truncated {
                out.push(format!(
                    "(lists cut at {} entries each; totals below are complete)",
                    p.blobs.len().max(p.links.len()).max(p.manifests.len())
                ));
            }
        }
        out.push(format!(
            "{verb} {} manifests, {} blob links, {} blobs: {} bytes freed{} ({} ms)",
            self.manifests_removed,
            self.links_removed,
            self.blobs_removed,
            self.bytes_freed,
            if self.dry_run { " (dry run)" } else { "" },
            self.millis
        ));
        out
    }
}

/// Why a collection stopped; what it removed before is consistent and stays removed.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    #[error("deleting {digest}: {source}")]
    Blob {
        digest: String,
        source: StorageError,
    },
}

/// Runs one collection against `stores`.
pub async fn collect(
    stores: &Stores,
    settings: &GcSettings,
    dry_run: bool,
) -> Result<GcReport, GcError> {
    let started = Instant::now();
    let cutoffs = settings.cutoffs();
    let mut report = GcReport {
        dry_run,
        started_at: now(),
        ..GcReport::default()
    };
    if dry_run {
        let preview = stores.meta.gc_preview(cutoffs, PREVIEW_LIMIT).await?;
        report.manifests_removed = preview.manifest_count;
        report.links_removed = preview.link_count;
        report.blobs_removed = preview.blob_count;
        report.bytes_freed = preview.bytes;
        report.preview = Some(preview);
    } else {
        let meta = &stores.meta;
        report.manifests_removed = drain("remove manifest", |c| async move {
            meta.gc_expire_manifests(cutoffs, c.as_ref(), BATCH).await
        })
        .await?;
        report.links_removed = drain("unlink blob", |c| async move {
            meta.gc_unlink_blobs(cutoffs, c.as_ref(), BATCH).await
        })
        .await?;
        delete_blobs(stores, cutoffs, &mut report).await?;
        let history_ms = i64::try_from(settings.history.as_millis()).unwrap_or(i64::MAX);
        report.history_events_removed = stores
            .meta
            .gc_prune_history(now_ms().saturating_sub(history_ms))
            .await?;
    }
    report.millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(
        target: "berth_core::audit",
        who = "gc",
        dry_run,
        manifests = report.manifests_removed,
        links = report.links_removed,
        blobs = report.blobs_removed,
        bytes = report.bytes_freed,
        ms = report.millis,
        "garbage collection finished"
    );
    Ok(report)
}

/// Runs a keyed step (expiry or unlinking) batch after batch until it is done; audits each
/// removal as `action` and returns how many there were.
async fn drain<F, Fut>(action: &'static str, mut step: F) -> Result<u64, GcError>
where
    F: FnMut(Option<Cursor>) -> Fut,
    Fut: std::future::Future<Output = Result<Step<(Namespace, Digest)>, MetadataError>>,
{
    let (mut cursor, mut removed) = (None, 0);
    loop {
        let step = step(cursor.take()).await?;
        for (ns, digest) in &step.removed {
            tracing::info!(target: "berth_core::audit", who = "gc", action,
                namespace = %ns.path(), %digest, "audit");
        }
        removed += step.removed.len() as u64;
        match step.next {
            Some(c) => cursor = Some(c),
            None => return Ok(removed),
        }
    }
}

async fn delete_blobs(
    stores: &Stores,
    cutoffs: Cutoffs,
    report: &mut GcReport,
) -> Result<(), GcError> {
    let mut cursor: Option<Cursor> = None;
    loop {
        let (claim, next) = stores
            .meta
            .gc_claim_blobs(cutoffs, cursor.as_ref(), CLAIM_BATCH)
            .await?;
        let outcomes: Vec<_> = futures_util::stream::iter(claim.blobs().to_vec())
            .map(|(digest, size)| async move {
                let size = match size {
                    Some(s) => Some(s),
                    None => stores.blobs.stat(&digest).await.ok().flatten(),
                };
                (stores.blobs.delete(&digest).await, digest, size)
            })
            .buffer_unordered(DELETES_IN_FLIGHT)
            .collect()
            .await;
        for (outcome, digest, size) in outcomes {
            match outcome {
                Ok(true) => {
                    tracing::info!(target: "berth_core::audit", who = "gc", action = "delete blob",
                        %digest, bytes = size.unwrap_or(0), "audit");
                    report.blobs_removed += 1;
                    report.bytes_freed += size.unwrap_or(0);
                }
                Ok(false) | Err(StorageError::NotFound | StorageError::UnsupportedDigest(_)) => {
                    report.blobs_removed += 1;
                    report.blobs_already_gone += 1;
                }
                // The claim is dropped: its records come back, the bytes deleted so far are
                // gone (a re-run removes their records).
                Err(source) => {
                    return Err(GcError::Blob {
                        digest: digest.to_string(),
                        source,
                    })
                }
            }
        }
        claim.commit().await?;
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(()),
        }
    }
}
