//! One holder at a time across every core on a metadata store: work holds a lease row in the
//! store, renewed while it runs. One collector (and `berth-core gc`) runs at a time — two
//! would be safe (the collector's claims see to that) but wasteful; three cores on a `24h`
//! schedule run one collection, not three. One proxy fetch per cold blob runs at a time, so N
//! cores pulling one cold layer ask the remote once.
//!
//! A core killed mid-run stops renewing, and another may take over once the lease expires
//! ([`LEASE_TTL`] at most). A holder that cannot renew (the store gone) stops its work: it can
//! no longer be sure it is alone.

use std::future::Future;
use std::time::Duration;

use crate::storage::metadata::cluster::ClusterStore;
use crate::storage::metadata::{now_ms, MetadataError};

/// How long a lease lasts unless renewed: the longest a dead holder blocks the next one.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
/// How often a holder renews.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// Why leased work did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{holder} holds the {name} lease")]
    Held { name: String, holder: String },
    #[error("the {name} lease could not be renewed; stopped")]
    Lost { name: String },
    #[error("the {name} lease: {source}")]
    Store { name: String, source: MetadataError },
}

fn until() -> i64 {
    now_ms().saturating_add(i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `work` while holding lease `name` as `holder`: refused if someone else holds it,
/// renewed while `work` runs, given up at the end (or when `work` is dropped, by expiry).
pub async fn hold<T>(
    store: &dyn ClusterStore,
    name: &str,
    holder: &str,
    work: impl Future<Output = T>,
) -> Result<T, LeaseError> {
    let take = || async {
        store
            .lease_take(name, holder, now_ms(), until())
            .await
            .map_err(|source| LeaseError::Store {
                name: name.to_owned(),
                source,
            })
    };
    if !take().await? {
        let holder = store
            .lease_holder(name, now_ms())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "another core".to_owned());
        return Err(LeaseError::Held {
            name: name.to_owned(),
            holder,
        });
    }
    let renew = async {
        loop {
            tokio::time::sleep(RENEW_EVERY).await;
            match take().await {
                Ok(true) => {}
                Ok(false) => {
                    return LeaseError::Lost {
                        name: name.to_owned(),
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing a lease failed");
                    return LeaseError::Lost {
                        name: name.to_owned(),
                    };
                }
            }
        }
    };
    let outcome = tokio::select! {
        done = work => Ok(done),
        lost = renew => Err(lost),
    };
    if let Err(e) = store.lease_release(name, holder).await {
        tracing::warn!(error = %e, lease = name, "releasing a lease failed; it expires by itself");
    }
    outcome
}
