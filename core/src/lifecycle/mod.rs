//! The registry's life-cycle: garbage collection, undo, cleanup policies and usage — what keeps
//! a registry that runs for months from only growing. Built on the MetadataStore's life-cycle
//! contract ([`crate::storage::metadata::lifecycle`]): every decision about what is reachable
//! is a database query, on SQLite and PostgreSQL alike.
//!
//! # Layout
//! - `gc.rs`: the online collector (CLI `berth-core gc`, `POST /api/v1/gc`, a schedule).
//! - this file: [`Lifecycle`], what a running core holds — one collection at a time in this
//!   process, the last reports for the admin API, the schedule.

pub mod gc;

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::watch;

pub use gc::{GcError, GcReport, GcSettings};

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
    running: tokio::sync::Mutex<()>,
    reports: Mutex<VecDeque<GcReport>>,
}

impl Lifecycle {
    pub fn new(stores: Stores, gc: GcSettings) -> Self {
        Lifecycle {
            stores,
            gc,
            running: tokio::sync::Mutex::new(()),
            reports: Mutex::new(VecDeque::new()),
        }
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
                r = self.collect(false) => r,
                _ = stop.changed() => return,
            };
            match outcome {
                Ok(_) | Err(RunError::Running) => {}
                Err(e) => tracing::error!(error = %e, "scheduled garbage collection failed"),
            }
        }
    }
}
