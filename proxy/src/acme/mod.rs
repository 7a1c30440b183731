//! Certificates by ACME (RFC 8555), per listener with `tls: { acme: ... }`, through
//! instant-acme.
//!
//! At start-up ([`Store::prepare`]) a listener without a stored certificate for its directory
//! and domains gets a temporary self-signed one, so it serves from the first second (and says
//! so in the log). Then one task per listener ([`AcmeTask`]) orders a certificate at once if
//! the stored one is temporary, else when renewal is due — `renew_before` ahead of expiry, by
//! default when a third of the lifetime is left, as Let's Encrypt advises. The new pair is
//! written under `state_dir` and swapped in through the listener's resolver, the same path a
//! file reload takes, so open connections keep their session and new ones get the new
//! certificate. A failure (CA down, a problem document) keeps the current certificate
//! serving, logs an ERROR naming the listener and the CA's problem, counts
//! `berth_edge_acme_failures_total`, and retries with exponential back-off and jitter — or
//! after the CA's `Retry-After`, whichever is longer. `berth-proxy renew LISTENER` forces an
//! order: it leaves a request in the listener's state ([`Store::request_renewal`]), which the
//! task sees within [`WAKE`].

pub mod challenge;
mod http;
mod order;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::AcmeSettings;
use crate::metrics;
use berth_certs::{CertSource, Resolver};
pub use challenge::{Http01App, Http01Tokens};
pub use http::{AcmeHttp, TrustError};
pub use store::{Store, StoreError};

/// First wait after a failed order; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// How often a task that is not backing off looks at the clock and for a renewal request.
pub const WAKE: Duration = Duration::from_secs(2);

/// One ACME listener's issuance and renewal.
pub struct AcmeTask {
    pub listener: String,
    pub settings: AcmeSettings,
    pub store: Store,
    pub resolver: Arc<Resolver>,
    pub tokens: Arc<Http01Tokens>,
    pub http: AcmeHttp,
}

/// ± 25 %.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.75 + rand::random::<f64>() * 0.5)
}

impl AcmeTask {
    /// When the served certificate should be replaced: now if it is temporary or a renewal
    /// was requested.
    fn renewal_due(&self) -> SystemTime {
        if self.store.renewal_requested() {
            return SystemTime::now();
        }
        let issued = self.store.order().is_some_and(|o| o.issued);
        let info = std::fs::read_to_string(self.store.files().cert)
            .ok()
            .and_then(|pem| berth_certs::describe(&pem).ok());
        let (true, Some(info)) = (issued, info) else {
            return SystemTime::now();
        };
        let unix = |secs: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        let not_after = unix(info.not_after_unix);
        let lifetime = not_after
            .duration_since(unix(info.not_before_unix))
            .unwrap_or_default();
        let ahead = self.settings.renew_before.unwrap_or(lifetime / 3);
        not_after.checked_sub(ahead).unwrap_or(SystemTime::now())
    }

    /// Orders, validates and installs a certificate.
    async fn renew(&self) -> Result<(), order::OrderError> {
        let issued = order::issue(self).await?;
        let record = store::OrderRecord {
            directory: self.settings.directory.clone(),
            domains: self.settings.domains.clone(),
            issued: true,
        };
        self.store
            .save(&issued.cert_pem, &issued.key_pem, &record)
            .map_err(order::OrderError::Store)?;
        self.resolver
            .reload()
            .map_err(|e| order::OrderError::Install(e.to_string()))?;
        self.resolver.set_source(CertSource::Acme);
        self.store.clear_renewal_request();
        tracing::info!(listener = %self.listener, domains = ?self.settings.domains,
            directory = %self.settings.directory, "ACME certificate issued and installed");
        Ok(())
    }

    /// What to wait after the `failures`-th failure in a row.
    fn backoff(&self, failures: u32) -> Duration {
        let exp = FIRST_BACKOFF.saturating_mul(1 << failures.saturating_sub(1).min(16));
        let wait = jitter(exp.min(MAX_BACKOFF));
        match self.http.take_retry_after() {
            Some(ra) => wait.max(ra),
            None => wait,
        }
    }
}

#[async_trait]
impl BackgroundService for AcmeTask {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut failures = 0u32;
        if let Ok(wait) = self.renewal_due().duration_since(SystemTime::now()) {
            tracing::info!(listener = %self.listener, renewal_in_s = wait.as_secs(),
                "ACME certificate current; nothing to order");
        }
        loop {
            if failures > 0 {
                // Backing off: the whole wait, whatever is asked meanwhile (the CA said so).
                tokio::select! {
                    _ = tokio::time::sleep(self.backoff(failures)) => {}
                    _ = shutdown.changed() => return,
                }
            } else if self.renewal_due() > SystemTime::now() {
                // Not due: look again after WAKE (a renewal request, a clock that moved).
                tokio::select! {
                    _ = tokio::time::sleep(WAKE) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            match self.renew().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    metrics::global()
                        .acme_failures
                        .get_or_create(&metrics::ListenerLabels {
                            listener: self.listener.clone(),
                        })
                        .inc();
                    tracing::error!(listener = %self.listener, directory = %self.settings.directory,
                        error = %e, attempt = failures,
                        "ACME issuance failed; the current certificate keeps serving");
                }
            }
        }
    }
}
