//! Replication: rules that copy images between a Berth repository and any other V2 registry,
//! pushed (Berth to the remote) or pulled (the remote into a hosted repository), filtered by
//! image and tag, renamed on the way, run by hand, on a schedule, or after a push.
//!
//! Every core holds the same rules; which core runs a rule does not matter and only one does
//! at a time: a run holds the `replication:<rule>` lease in the metadata store, and its report
//! is stored there with every core's, so the schedule (a run is due when none started within
//! the interval on any core) and the history are the cluster's.
//!
//! # Layout
//! - `rule.rs`: rules; `run.rs`: one run; `copy.rs`: one tag, whole (indexes, blobs,
//!   referrers), written once for both directions over `side.rs`'s trait;
//! - `remote.rs`: the other registry's client; `remote_side.rs`: its end of a copy.

pub mod copy;
mod on_push;
pub mod remote;
mod remote_side;
pub mod rule;
pub mod run;
pub mod side;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

pub use rule::{Direction, RemoteSettings, Rule, TagFilter, Trigger};
pub use run::{Outcome, RunReport};

use crate::lifecycle::lease::{self, LeaseError};
use crate::oci::RepoName;
use crate::repo::Repository;
use crate::storage::metadata::replication::ReplicationRun;
use crate::storage::metadata::{now_ms, MetadataError, MetadataStore};

/// Runs kept per rule, of all cores together.
const RUNS_KEPT: u32 = 100;

/// Why a copy step failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReplicateError {
    /// The rule cannot be used as configured (a secret file unreadable, ...).
    #[error("{0}")]
    Config(String),
    /// The remote could not be reached or answered with a server error: worth retrying.
    #[error("remote {0}")]
    Remote(String),
    /// The remote refused the credentials or the action.
    #[error("remote refused: {0}")]
    Denied(String),
    /// The content is not what it should be (bad manifest, other bytes than the digest).
    #[error("content: {0}")]
    Content(String),
    /// This registry's side failed.
    #[error("local: {0}")]
    Local(String),
}

impl ReplicateError {
    /// Worth another attempt.
    pub fn is_transient(&self) -> bool {
        matches!(self, ReplicateError::Remote(_))
    }
}

/// Why a run did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no replication rule named {0}")]
    NoSuchRule(String),
    #[error("rule {rule} is already running on {holder}")]
    Running { rule: String, holder: String },
    #[error(transparent)]
    Store(#[from] MetadataError),
}

/// The repositories a run reads or writes, from whoever serves them.
pub trait Repos: Send + Sync {
    fn repository(&self, name: &RepoName) -> Option<Arc<dyn Repository>>;
}

/// A rule as listed: its settings and whether it runs now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleStatus {
    pub name: String,
    pub direction: Direction,
    pub repository: String,
    pub remote: String,
    pub images: String,
    pub tags: String,
    pub destination: Option<String>,
    pub on_push: bool,
    /// Seconds.
    pub schedule: Option<u64>,
    pub delete: bool,
    /// The core running it now, if one does.
    pub running_on: Option<String>,
}

/// A core's replication: the rules, and the runs it starts.
pub struct Replicator {
    rules: Mutex<Arc<Vec<Rule>>>,
    store: Arc<dyn MetadataStore>,
    core: String,
    /// When this core started (Unix ms): a schedule with no run yet counts from here.
    started: i64,
    /// Pushed tags waiting for their on-push rules: (rule, image, tag) to when it was pushed.
    pending: Mutex<std::collections::BTreeMap<(String, String, String), std::time::Instant>>,
    wake: tokio::sync::Notify,
}

impl Replicator {
    pub fn new(rules: Vec<Rule>, store: Arc<dyn MetadataStore>, core: String) -> Replicator {
        Replicator {
            rules: Mutex::new(Arc::new(rules)),
            store,
            core,
            started: now_ms(),
            pending: Mutex::new(std::collections::BTreeMap::new()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Runs these rules from now on (a run in progress finishes with the rule it started with).
    pub fn replace_rules(&self, rules: Vec<Rule>) {
        *self.rules.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(rules);
    }

    pub fn rules(&self) -> Arc<Vec<Rule>> {
        self.rules.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn rule(&self, name: &str) -> Option<Rule> {
        self.rules().iter().find(|r| r.name == name).cloned()
    }

    fn lease_name(rule: &str) -> String {
        format!("replication:{rule}")
    }

    /// Every rule with whether it runs now.
    pub async fn status(&self) -> Result<Vec<RuleStatus>, MetadataError> {
        let mut out = Vec::new();
        for r in self.rules().iter() {
            let running_on = self
                .store
                .lease_holder(&Self::lease_name(&r.name), now_ms())
                .await?;
            out.push(RuleStatus {
                name: r.name.clone(),
                direction: r.direction,
                repository: r.repository.to_string(),
                remote: r.remote.url.clone(),
                images: r.images.clone(),
                tags: r.tags.describe(),
                destination: r.destination.clone(),
                on_push: r.trigger.on_push,
                schedule: r.trigger.schedule.map(|d| d.as_secs()),
                delete: r.delete,
                running_on,
            });
        }
        Ok(out)
    }

    /// A rule's runs, newest first.
    pub async fn runs(
        &self,
        rule: &str,
        limit: u32,
    ) -> Result<Option<Vec<serde_json::Value>>, MetadataError> {
        if self.rule(rule).is_none() {
            return Ok(None);
        }
        let runs = self.store.replication_runs(rule, limit).await?;
        Ok(Some(
            runs.into_iter()
                .map(|r| serde_json::from_str(&r.report).unwrap_or_default())
                .collect(),
        ))
    }

    /// Starts a run of `rule` in the background (`trigger`: manual, push); refused when the
    /// rule is unknown or already running on some core.
    pub async fn start(
        self: &Arc<Self>,
        repos: Arc<dyn Repos>,
        rule: &str,
        trigger: &'static str,
    ) -> Result<(), StartError> {
        let rule = self
            .rule(rule)
            .ok_or_else(|| StartError::NoSuchRule(rule.to_owned()))?;
        let lease = Self::lease_name(&rule.name);
        if let Some(holder) = self.store.lease_holder(&lease, now_ms()).await? {
            return Err(StartError::Running {
                rule: rule.name.clone(),
                holder,
            });
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me
                .run(repos.as_ref(), &rule, trigger, run::Selection::All)
                .await
            {
                tracing::warn!(rule = %rule.name, error = %e, "replication run did not start");
            }
        });
        Ok(())
    }

    /// Runs `rule` (what `selection` names) now under its lease and records the report.
    pub async fn run(
        &self,
        repos: &dyn Repos,
        rule: &Rule,
        trigger: &str,
        selection: run::Selection,
    ) -> Result<Option<RunReport>, StartError> {
        let work = async {
            if trigger == "schedule" && !self.due(rule).await? {
                return Ok(None);
            }
            let started_at = now_ms();
            let repo = repos.repository(&rule.repository);
            let run::Ran {
                tally,
                failures,
                failed,
                error,
            } = run::run(rule, repo, selection).await;
            let outcome = match (&error, failed, tally.images_copied + tally.images_skipped) {
                (Some(_), _, _) => Outcome::Failed,
                (None, 0, _) => Outcome::Succeeded,
                (None, _, 0) => Outcome::Failed,
                (None, _, _) => Outcome::Partial,
            };
            let report = RunReport {
                id: hex::encode(rand::random::<[u8; 8]>()),
                rule: rule.name.clone(),
                core: self.core.clone(),
                trigger: trigger.to_owned(),
                started_at,
                finished_at: now_ms(),
                outcome,
                tally,
                failed,
                failures,
                error,
            };
            self.record(&report).await?;
            Ok::<_, StartError>(Some(report))
        };
        match lease::hold(
            self.store.as_ref(),
            &Self::lease_name(&rule.name),
            &self.core,
            work,
        )
        .await
        {
            Ok(r) => r,
            Err(LeaseError::Held { holder, .. }) => Err(StartError::Running {
                rule: rule.name.clone(),
                holder,
            }),
            Err(LeaseError::Lost { .. }) => Ok(None),
            Err(LeaseError::Store { source, .. }) => Err(StartError::Store(source)),
        }
    }

    async fn record(&self, report: &RunReport) -> Result<(), MetadataError> {
        let m = crate::metrics::global();
        m.replicated_images.inc_by(report.tally.images_copied);
        m.replicated_bytes.inc_by(report.tally.bytes_copied);
        m.replication_failures
            .inc_by(report.failed + u64::from(report.error.is_some()));
        let run = ReplicationRun {
            id: report.id.clone(),
            rule: report.rule.clone(),
            core: report.core.clone(),
            trigger: report.trigger.clone(),
            started_at: report.started_at,
            report: serde_json::to_string(report).unwrap_or_default(),
        };
        self.store.replication_run_record(&run, RUNS_KEPT).await
    }

    /// Whether the rule's schedule owes a run: none started on any core within it.
    async fn due(&self, rule: &Rule) -> Result<bool, MetadataError> {
        let Some(every) = rule.trigger.schedule else {
            return Ok(false);
        };
        let last = self.store.replication_last(&rule.name, "schedule").await?;
        let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
        Ok(now_ms() >= last.unwrap_or(self.started).saturating_add(every))
    }

    /// Runs the rules' schedules until `stop` changes.
    pub async fn schedule(&self, repos: Arc<dyn Repos>, mut stop: watch::Receiver<bool>) {
        let shortest = self.rules().iter().filter_map(|r| r.trigger.schedule).min();
        let Some(shortest) = shortest else {
            return;
        };
        let poll = (shortest / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + poll, poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => return,
            }
            for rule in self.rules().iter().filter(|r| r.trigger.schedule.is_some()) {
                match self.due(rule).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!(error = %e, "replication schedule: the store failed");
                        continue;
                    }
                }
                let outcome = tokio::select! {
                    r = self.run(repos.as_ref(), rule, "schedule", run::Selection::All) => r,
                    _ = stop.changed() => return,
                };
                if let Err(e @ StartError::Store(_)) = outcome {
                    tracing::error!(rule = %rule.name, error = %e, "scheduled replication failed");
                }
            }
        }
    }
}
