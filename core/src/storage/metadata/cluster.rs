//! The cluster half of the metadata contract: what cores sharing one database must agree on so
//! that a client or an operator sees the same registry whichever core answers.
//!
//! - **Signing keys**: registry tokens are signed with the store's `current` key; after a
//!   rotation the `previous` one is still accepted for one token lifetime, so nobody is logged
//!   out. The first core on an empty store creates the key; the insert is conditional, so two
//!   cores starting at once agree on one.
//! - **Leases**: a named lease has one holder until it expires; one collector runs at a time
//!   across cores, and a core killed mid-run gives the lease up by letting it expire.
//! - **Collection runs**: every core's reports, so the admin API lists them all, and the
//!   schedule starts a run only when none started within the interval on any core.

use std::sync::OnceLock;

use async_trait::async_trait;

use super::Result;

/// This machine's name (`/etc/hostname`), or `localhost`.
pub fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// This process's name among the cores on one metadata store (lease holders, collection
/// reports): host, process id, and a random part for containers where every core is process 1.
pub fn process_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        format!(
            "{}/{}/{}",
            hostname(),
            std::process::id(),
            hex::encode(rand::random::<[u8; 2]>())
        )
    })
}

/// Which of the two key slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySlot {
    Current,
    Previous,
}

impl KeySlot {
    pub fn as_str(self) -> &'static str {
        match self {
            KeySlot::Current => "current",
            KeySlot::Previous => "previous",
        }
    }
}

/// A stored signing key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// A fingerprint naming the key.
    pub kid: String,
    /// The key, hex; `None` when it lives in a file every core reads.
    pub secret: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// When it stopped signing (the `previous` slot), Unix milliseconds.
    pub retired_at: Option<i64>,
}

/// One collection as stored: the report is the collector's JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcRun {
    pub id: String,
    /// The core that ran it.
    pub core: String,
    /// Started by the schedule (not by an operator).
    pub scheduled: bool,
    /// Unix seconds.
    pub started_at: i64,
    pub report: String,
}

/// The last real cleanup run of one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanupRun {
    pub repo: String,
    /// The core that ran it.
    pub core: String,
    /// Unix milliseconds.
    pub at: i64,
    /// The run's report, JSON.
    pub report: String,
}

#[async_trait]
pub trait ClusterStore: Send + Sync {
    /// The `current` key, storing `candidate` first if there is none; whichever of several
    /// racing cores wrote first wins, and all of them get its record.
    async fn signing_key_init(&self, candidate: &KeyRecord) -> Result<KeyRecord>;
    /// The key in a slot.
    async fn signing_key(&self, slot: KeySlot) -> Result<Option<KeyRecord>>;
    /// Makes `next` the current key and the current one the previous (retired now), in one
    /// transaction; the key before that is forgotten. Bumps the settings version, so every
    /// core picks the new key up with its next poll.
    async fn signing_key_rotate(&self, next: &KeyRecord) -> Result<()>;

    /// Takes or renews `name` for `holder` until `until_ms`: `true` if it is now held by
    /// `holder` (it was free, expired before `now_ms`, or already `holder`'s).
    async fn lease_take(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool>;
    /// Gives `name` up if `holder` holds it.
    async fn lease_release(&self, name: &str, holder: &str) -> Result<()>;
    /// Who holds `name` at `now_ms`, if anyone.
    async fn lease_holder(&self, name: &str, now_ms: i64) -> Result<Option<String>>;

    /// Records a finished collection; keeps the newest `keep` runs.
    async fn gc_run_record(&self, run: &GcRun, keep: u32) -> Result<()>;
    /// The newest runs first, at most `limit`.
    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>>;
    /// When the newest scheduled run started (Unix seconds), on any core.
    async fn gc_last_scheduled(&self) -> Result<Option<i64>>;
    /// Stores a repository's latest cleanup run (replacing the one before).
    async fn cleanup_run_record(&self, run: &CleanupRun) -> Result<()>;
    /// The latest cleanup run of every repository that had one (of `repo` only, if given).
    async fn cleanup_runs(&self, repo: Option<&str>) -> Result<Vec<CleanupRun>>;
}
