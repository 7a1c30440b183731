//! The registry's life-cycle: garbage collection, undo, cleanup policies and usage — what keeps
//! a registry that runs for months from only growing. Built on the MetadataStore's life-cycle
//! contract ([`crate::storage::metadata::lifecycle`]): every decision about what is reachable
//! is a database query, on SQLite and PostgreSQL alike.
//!
//! # Layout
//! - `gc.rs`: the online collector (CLI `berth-core gc`, `POST /api/v1/gc`, a schedule).
//! - `lease.rs`: one collector at a time across every core on the metadata store.
//! - `policy.rs`: cleanup policies and a proxy's cache eviction, with exact dry runs.
//! - this file: [`Lifecycle`], what a running core holds — collections under the lease, their
//!   reports kept in the store (every core's, for the admin API), the schedule (policies, then
//!   a collection), which is the cluster's: a run is due when no core started one within the
//!   interval.

pub mod gc;
pub mod lease;
pub mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

pub use gc::{GcError, GcReport, GcSettings};
pub use lease::LeaseError;
pub use policy::{CleanupReport, RepoLifecycle};

use crate::events::{Action, Notifier, TargetInfo};
use crate::oci::RepoName;
use crate::storage::metadata::cluster::{CleanupRun, GcRun};
use crate::storage::metadata::{now, now_ms, MetadataError};
use crate::storage::Stores;

/// Reports kept in the store, of all cores together.
const REPORTS_KEPT: u32 = 50;
/// The lease every collection holds.
pub const GC_LEASE: &str = "gc";

/// Why a collection did not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("a garbage collection is already running in this core")]
    Running,
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Gc(#[from] GcError),
    #[error("recording the collection: {0}")]
    Record(#[from] MetadataError),
}

/// Collections as the admin API and the UI show them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GcStatus {
    /// A collection runs now, in this core or another.
    pub running: bool,
    /// The core that holds the lease, if one does.
    pub running_on: Option<String>,
    /// The newest runs of every core first: each report with `core` and `scheduled`.
    pub reports: Vec<serde_json::Value>,
}

/// The life-cycle services of a running core.
pub struct Lifecycle {
    stores: Stores,
    pub gc: GcSettings,
    /// Replaced whole when repositories change at run time.
    repos: std::sync::RwLock<Arc<BTreeMap<RepoName, RepoLifecycle>>>,
    running: tokio::sync::Mutex<()>,
    /// This core's name in leases and reports.
    core: String,
    /// When this core started (Unix seconds): the schedule's start when no run is stored.
    started: i64,

    /// Removals by policy are delete events, as a client's `DELETE` would be.
    events: Arc<Notifier>,
}

impl Lifecycle {
    pub fn new(
        stores: Stores,
        gc: GcSettings,
        repos: BTreeMap<RepoName, RepoLifecycle>,
        events: Arc<Notifier>,
        core: String,
    ) -> Self {
        Lifecycle {
            events,
            stores,
            gc,
            repos: std::sync::RwLock::new(Arc::new(repos)),
            running: tokio::sync::Mutex::new(()),
            core,
            started: now(),
        }
    }

    /// A repository's life-cycle settings.
    pub fn repo(&self, name: &RepoName) -> Option<RepoLifecycle> {
        self.all().get(name).cloned()
    }

    fn all(&self) -> Arc<BTreeMap<RepoName, RepoLifecycle>> {
        self.repos
            .read()
            .map_or_else(|p| p.into_inner().clone(), |r| r.clone())
    }

    /// Takes the settings of the repositories served from now on.
    pub fn replace(&self, repos: BTreeMap<RepoName, RepoLifecycle>) {
        let mut r = self.repos.write().unwrap_or_else(|p| p.into_inner());
        *r = Arc::new(repos);
    }

    /// Runs (or previews) one repository's cleanup policies and cache eviction; a real run's
    /// report is kept for the admin API.
    pub async fn cleanup(
        &self,
        name: &RepoName,
        dry_run: bool,
    ) -> Result<CleanupReport, MetadataError> {
        let Some(life) = self.repo(name) else {
            return Ok(CleanupReport::default());
        };
        self.stores.pulls.flush(self.stores.meta.as_ref()).await?;
        let mut report = policy::cleanup(&self.stores, name, &life, dry_run).await?;
        if let Some(cache) = &life.cache {
            let evicted = policy::evict(&self.stores, name, cache, dry_run).await?;
            report.manifests.extend(evicted.manifests);
            report.bytes += evicted.bytes;
        }
        if !dry_run {
            if !life.cleanup.is_empty() || life.cache.is_some() {
                count(&report);
            }
            self.announce(&report);
            let run = CleanupRun {
                repo: name.to_string(),
                core: self.core.clone(),
                at: now_ms(),
                report: serde_json::to_string(&report).unwrap_or_default(),
            };
            // The removals are done; a report the store cannot take is only a report.
            if let Err(e) = self.stores.meta.cleanup_run_record(&run).await {
                tracing::warn!(repository = %name, error = %e, "recording a cleanup run failed");
            }
        }
        Ok(report)
    }

    /// A delete event per removed tag and manifest of a real run.
    fn announce(&self, report: &CleanupReport) {
        for (r, tag) in report
            .tags
            .iter()
            .map(|r| (r, r.tag.clone().unwrap_or_default()))
            .chain(report.manifests.iter().map(|r| (r, String::new())))
        {
            let target = TargetInfo {
                repository: format!("{}/{}", report.repository, r.image),
                // Distribution names a deleted tag without its digest, a manifest by digest.
                digest: if tag.is_empty() {
                    r.digest.clone()
                } else {
                    String::new()
                },
                tag,
                ..TargetInfo::default()
            };
            self.events
                .emit_internal(Action::Delete, target, "cleanup", "cleanup");
        }
    }

    /// The last real cleanup run of a repository (of `name`, or of all), on any core: its
    /// report with the core that ran it.
    pub async fn last_cleanups(
        &self,
        name: Option<&RepoName>,
    ) -> Result<Vec<serde_json::Value>, MetadataError> {
        let runs = self
            .stores
            .meta
            .cleanup_runs(name.map(RepoName::as_str))
            .await?;
        Ok(runs
            .into_iter()
            .map(|r| {
                let mut v: serde_json::Value = serde_json::from_str(&r.report).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("core".into(), r.core.into());
                }
                v
            })
            .collect())
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// This core's name in leases and reports.
    pub fn core(&self) -> &str {
        &self.core
    }

    /// Runs one collection now, unless one is running here or on another core.
    pub async fn collect(&self, dry_run: bool) -> Result<GcReport, RunError> {
        let Ok(_one) = self.running.try_lock() else {
            return Err(RunError::Running);
        };
        let work = gc::collect(&self.stores, &self.gc, dry_run);
        let report = match dry_run {
            // A preview changes nothing: no lease needed.
            true => work.await?,
            false => lease::hold(self.stores.meta.as_ref(), GC_LEASE, &self.core, work).await??,
        };
        self.finished(&report, false).await?;
        Ok(report)
    }

    /// Every repository's policies, then a collection, if no core started one within the
    /// interval; `None` if it was not due.
    async fn scheduled(&self, every: Duration) -> Result<Option<GcReport>, RunError> {
        if !self.due(every).await? {
            return Ok(None);
        }
        let Ok(_one) = self.running.try_lock() else {
            return Err(RunError::Running);
        };
        let meta = self.stores.meta.as_ref();
        let work = async {
            // Asked again under the lease: a core that finished just now has recorded its run.
            if !self.due(every).await? {
                return Ok(None);
            }
            for name in self.all().keys() {
                if let Err(e) = self.cleanup(name, false).await {
                    tracing::error!(repository = %name, error = %e, "cleanup policies failed");
                }
            }
            let report = gc::collect(&self.stores, &self.gc, false).await?;
            // Recorded under the lease, so the next core to take it sees this run.
            self.finished(&report, true).await?;
            Ok::<_, RunError>(Some(report))
        };
        lease::hold(meta, GC_LEASE, &self.core, work).await?
    }

    /// Whether the schedule owes a run: none started on any core within `every` (and, with
    /// none recorded, this core has been up that long).
    async fn due(&self, every: Duration) -> Result<bool, MetadataError> {
        let last = self.stores.meta.gc_last_scheduled().await?;
        let every = i64::try_from(every.as_secs()).unwrap_or(i64::MAX);
        Ok(now() >= last.unwrap_or(self.started).saturating_add(every))
    }

    /// Counts a finished run and stores its report.
    async fn finished(&self, report: &GcReport, scheduled: bool) -> Result<(), MetadataError> {
        record(&self.stores, &self.core, report, scheduled).await
    }

    /// Whether a collection runs now, here or elsewhere, and the latest runs of every core.
    pub async fn status(&self) -> Result<GcStatus, MetadataError> {
        let meta = &self.stores.meta;
        let running_on = meta.lease_holder(GC_LEASE, now_ms()).await?;
        let reports = meta
            .gc_runs(REPORTS_KEPT)
            .await?
            .into_iter()
            .map(|r| {
                let mut v: serde_json::Value = serde_json::from_str(&r.report).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("core".into(), r.core.into());
                    o.insert("scheduled".into(), r.scheduled.into());
                }
                v
            })
            .collect();
        Ok(GcStatus {
            running: running_on.is_some() || self.running.try_lock().is_err(),
            running_on,
            reports,
        })
    }

    /// Runs the schedule until `stop` changes: every poll asks whether a run is due (on the
    /// cluster's clock, see [`Lifecycle::due`]).
    pub async fn schedule(&self, mut stop: watch::Receiver<bool>) {
        let Some(every) = self.gc.interval else {
            return;
        };
        let poll = (every / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            // Stopping halfway is safe: a dropped claim gives its records back.
            let outcome = tokio::select! {
                r = self.scheduled(every) => r,
                _ = stop.changed() => return,
            };
            match outcome {
                Ok(_) | Err(RunError::Running) | Err(RunError::Lease(LeaseError::Held { .. })) => {}
                Err(e) => tracing::error!(error = %e, "scheduled garbage collection failed"),
            }
        }
    }
}

/// Counts a finished collection in the metrics and stores its report (of `core`) with those
/// of every core.
pub async fn record(
    stores: &Stores,
    core: &str,
    report: &GcReport,
    scheduled: bool,
) -> Result<(), MetadataError> {
    let m = crate::metrics::global();
    m.gc_runs
        .get_or_create(&crate::metrics::GcLabels {
            dry_run: report.dry_run.to_string(),
        })
        .inc();
    if !report.dry_run {
        m.gc_bytes_freed.inc_by(report.bytes_freed);
    }
    let run = GcRun {
        id: format!("{}-{}", now_ms(), hex::encode(rand::random::<[u8; 4]>())),
        core: core.to_owned(),
        scheduled,
        started_at: report.started_at,
        report: serde_json::to_string(report).unwrap_or_default(),
    };
    stores.meta.gc_run_record(&run, REPORTS_KEPT).await
}

/// A real cleanup run in the metrics.
fn count(report: &CleanupReport) {
    use crate::metrics::{CleanupLabels, RepoLabels};
    let m = crate::metrics::global();
    let repository = report.repository.clone();
    m.cleanup_runs
        .get_or_create(&RepoLabels {
            repository: repository.clone(),
        })
        .inc();
    for (kind, n) in [
        ("tag", report.tags.len()),
        ("manifest", report.manifests.len()),
    ] {
        let labels = CleanupLabels {
            repository: repository.clone(),
            kind: kind.to_owned(),
        };
        m.cleanup_removed.get_or_create(&labels).inc_by(n as u64);
    }
}
