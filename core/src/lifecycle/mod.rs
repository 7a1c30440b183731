//! The registry's life-cycle: garbage collection, undo, cleanup policies and usage — what keeps
//! a registry that runs for months from only growing. Built on the MetadataStore's life-cycle
//! contract ([`crate::storage::metadata::lifecycle`]): every decision about what is reachable
//! is a database query, on SQLite and PostgreSQL alike.
//!
//! # Layout
//! - `gc.rs`: the online collector (CLI `berth-core gc`, `POST /api/v1/gc`, a schedule).
//! - `policy.rs`: cleanup policies and a proxy's cache eviction, with exact dry runs.
//! - this file: [`Lifecycle`], what a running core holds — one collection at a time in this
//!   process, the last reports for the admin API, the schedule (policies, then a collection).

pub mod gc;
pub mod policy;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use gc::{GcError, GcReport, GcSettings};
pub use policy::{CleanupReport, RepoLifecycle};

use crate::events::{Action, Notifier, TargetInfo};
use crate::oci::RepoName;
use crate::storage::metadata::MetadataError;
use crate::storage::Stores;

/// Reports kept for the admin API.
const REPORTS_KEPT: usize = 20;

/// Why a collection did not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("a garbage collection is already running in this core")]
    Running,
    #[error(transparent)]
    Gc(#[from] GcError),
}

/// The life-cycle services of a running core.
pub struct Lifecycle {
    stores: Stores,
    pub gc: GcSettings,
    /// Replaced whole when repositories change at run time.
    repos: std::sync::RwLock<Arc<BTreeMap<RepoName, RepoLifecycle>>>,
    running: tokio::sync::Mutex<()>,
    reports: Mutex<VecDeque<GcReport>>,
    cleanups: Mutex<BTreeMap<RepoName, CleanupReport>>,
    /// Removals by policy are delete events, as a client's `DELETE` would be.
    events: Arc<Notifier>,
}

impl Lifecycle {
    pub fn new(
        stores: Stores,
        gc: GcSettings,
        repos: BTreeMap<RepoName, RepoLifecycle>,
        events: Arc<Notifier>,
    ) -> Self {
        Lifecycle {
            events,
            stores,
            gc,
            repos: std::sync::RwLock::new(Arc::new(repos)),
            running: tokio::sync::Mutex::new(()),
            reports: Mutex::new(VecDeque::new()),
            cleanups: Mutex::new(BTreeMap::new()),
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
            if let Ok(mut c) = self.cleanups.lock() {
                c.insert(name.clone(), report.clone());
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

    /// The last real cleanup run of a repository.
    pub fn last_cleanup(&self, name: &RepoName) -> Option<CleanupReport> {
        self.cleanups.lock().ok()?.get(name).cloned()
    }

    /// Every repository's policies, then a collection (what the schedule runs).
    async fn scheduled(&self) -> Result<GcReport, RunError> {
        for name in self.all().keys() {
            if let Err(e) = self.cleanup(name, false).await {
                tracing::error!(repository = %name, error = %e, "cleanup policies failed");
            }
        }
        self.collect(false).await
    }

    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// Runs one collection now, unless one is running in this core.
    pub async fn collect(&self, dry_run: bool) -> Result<GcReport, RunError> {
        let Ok(_one) = self.running.try_lock() else {
            return Err(RunError::Running);
        };
        let report = gc::collect(&self.stores, &self.gc, dry_run).await?;
        let m = crate::metrics::global();
        m.gc_runs
            .get_or_create(&crate::metrics::GcLabels {
                dry_run: dry_run.to_string(),
            })
            .inc();
        if !dry_run {
            m.gc_bytes_freed.inc_by(report.bytes_freed);
        }
        if let Ok(mut r) = self.reports.lock() {
            r.push_front(report.clone());
            r.truncate(REPORTS_KEPT);
        }
        Ok(report)
    }

    /// Whether a collection is running in this core.
    pub fn collecting(&self) -> bool {
        self.running.try_lock().is_err()
    }

    /// The latest reports, newest first.
    pub fn reports(&self) -> Vec<GcReport> {
        self.reports
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Collects on the configured schedule until `stop` changes.
    pub async fn schedule(&self, mut stop: watch::Receiver<bool>) {
        let Some(every) = self.gc.interval else {
            return;
        };
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            // Stopping halfway is safe: a dropped claim gives its records back.
            let outcome = tokio::select! {
                r = self.scheduled() => r,
                _ = stop.changed() => return,
            };
            match outcome {
                Ok(_) | Err(RunError::Running) => {}
                Err(e) => tracing::error!(error = %e, "scheduled garbage collection failed"),
            }
        }
    }
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
