//! When manifests were last pulled, cheaply: pulls are noted in memory and written in one
//! transaction per flush (at most one row update per pulled manifest per flush), never a
//! write per pull. Policies and cache eviction read the times (`not_pulled_for`, `max_age`)
//! at day granularity, so a flush interval of a minute loses nothing that matters.

use std::collections::HashMap;
use std::sync::Mutex;

use super::metadata::{now, MetadataError, MetadataStore};
use super::Namespace;
use crate::oci::Digest;

/// Pulls not yet written.
#[derive(Default)]
pub struct PullLog {
    pending: Mutex<HashMap<(Namespace, Digest), i64>>,
}

/// At most this many distinct manifests are held between flushes; beyond, pulls of new ones
/// are dropped until the next flush (their times are only a little older then).
const MAX_PENDING: usize = 100_000;

impl PullLog {
    /// Notes a pull of `digest` in `ns` now.
    pub fn record(&self, ns: &Namespace, digest: &Digest) {
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        if p.len() >= MAX_PENDING && !p.contains_key(&(ns.clone(), digest.clone())) {
            return;
        }
        p.insert((ns.clone(), digest.clone()), now());
    }

    /// Writes what was noted since the last flush.
    pub async fn flush(&self, meta: &dyn MetadataStore) -> Result<(), MetadataError> {
        let batch: Vec<(Namespace, Digest, i64)> = match self.pending.lock() {
            Ok(mut p) => p.drain().map(|((ns, d), at)| (ns, d, at)).collect(),
            Err(_) => return Ok(()),
        };
        meta.record_pulls(&batch).await
    }
}
