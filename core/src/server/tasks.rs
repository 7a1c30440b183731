//! Background work of a running core: the sweeper of abandoned upload sessions, and reloads
//! of direct-HTTPS certificates.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::connectors::ConnectorSet;
use crate::registry::Registry;
use crate::storage::{Stores, UploadInfo};

/// How often the settings version is read, to follow changes other cores made: the bound on
/// how long a revoked API token, a deleted user or a narrowed role still works on a core other
/// than the one that made the change (that one applies it at once). One indexed read a second.
const SETTINGS_POLL: Duration = Duration::from_secs(1);

/// Applies settings another core changed (several cores on one database): one cheap read of
/// the settings version per poll, a full reload only when it moved.
pub(super) async fn follow_settings(registry: Arc<Registry>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SETTINGS_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = registry.control.refresh(&registry).await {
            tracing::warn!(error = %e, "cannot apply settings changed by another core");
        }
    }
}

/// How often direct-HTTPS certificate files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(2);

/// Reloads direct-HTTPS certificates when their files change; a broken file keeps the old one.
pub(super) async fn watch_certificates(
    connectors: Arc<ConnectorSet>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CERT_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for (_, r) in connectors.resolvers().await {
            if r.changed() {
                let result = r.reload();
                crate::metrics::global().certificate_reload(r.listener(), result.is_ok());
                if let Err(e) = result {
                    tracing::error!(repository = %r.listener(), error = %e,
                        "certificate reload failed; the previous certificate keeps serving");
                }
            }
        }
    }
}

/// How often noted pull times are written.
const PULL_FLUSH: Duration = Duration::from_secs(30);

/// Writes noted pull times every [`PULL_FLUSH`], and once more on shutdown.
pub(super) async fn flush_pulls(stores: Stores, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(PULL_FLUSH);
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        if let Err(e) = stores.pulls.flush(stores.meta.as_ref()).await {
            tracing::warn!(error = %e, "cannot record pull times");
        }
        if stopping {
            return;
        }
    }
}

/// Removes upload sessions nobody has touched for `expiry` (abandoned pushes would otherwise
/// hold disk space and count against the per-repository cap forever).
pub(super) async fn sweep_uploads(
    stores: Stores,
    expiry: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let period = (expiry / 4).clamp(Duration::from_millis(200), Duration::from_secs(300));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let uploads = match stores.meta.uploads(None).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list upload sessions");
                continue;
            }
        };
        for u in uploads
            .into_iter()
            .map(UploadInfo::from)
            .filter(|u| u.idle >= expiry)
        {
            match stores.end_upload(&u.id).await {
                Ok(_) => {
                    tracing::info!(session = %u.id, namespace = %u.namespace.path(), idle_s = u.idle.as_secs(), "removed an abandoned upload session")
                }
                Err(e) => {
                    tracing::warn!(session = %u.id, error = %e, "cannot remove an abandoned upload session")
                }
            }
        }
    }
}
