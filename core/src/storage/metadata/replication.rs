//! Replication runs in the metadata contract: every core's runs in one table, so the admin API
//! lists the same history whichever core answers, and a rule's schedule is the cluster's (a
//! run is due when none started within the interval on any core).

use async_trait::async_trait;

use super::Result;

/// One finished run as stored: the report is the run's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRun {
    pub id: String,
    pub rule: String,
    /// The core that ran it.
    pub core: String,
    /// `manual`, `schedule` or `push`.
    pub trigger: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub report: String,
}

#[async_trait]
pub trait ReplicationStore: Send + Sync {
    /// Records a finished run; keeps the newest `keep` of its rule.
    async fn replication_run_record(&self, run: &ReplicationRun, keep: u32) -> Result<()>;
    /// A rule's newest runs first, at most `limit`.
    async fn replication_runs(&self, rule: &str, limit: u32) -> Result<Vec<ReplicationRun>>;
    /// When the rule's newest run with `trigger` started (Unix ms), on any core.
    async fn replication_last(&self, rule: &str, trigger: &str) -> Result<Option<i64>>;
}
