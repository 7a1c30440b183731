//! Bind every port, serve them (accept loops in `accept.rs`), start the background tasks,
//! and drain gracefully on shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::accept::Accept;
use super::connectors::{BoundConnector, ConnectorSet};
use super::port::Port;
use super::{tasks, ServeError};
use crate::config::{Config, Limits};
use crate::registry::{Listen, Registry};
use crate::storage::Stores;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Bound sockets, ready to serve.
pub struct Bound {
    pub main: TcpListener,
    /// `metrics.listen`: `/metrics`, `/healthz`, `/readyz`.
    pub metrics: Option<TcpListener>,
    pub connectors: Vec<BoundConnector>,
}

impl Bound {
    /// The actual addresses, as written to the ready file.
    pub fn addresses(&self) -> serde_json::Value {
        let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let pick = |tls: bool| -> BTreeMap<_, _> {
            self.connectors
                .iter()
                .filter(|c| c.tls.is_some() == tls)
                .map(|c| (c.repo.to_string(), addr(&c.socket)))
                .collect()
        };
        serde_json::json!({
            "main": addr(&self.main),
            "metrics": self.metrics.as_ref().map(addr),
            "connectors": pick(false),
            "https_connectors": pick(true),
        })
    }
}

async fn bind_one(addr: SocketAddr, owner: String) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            owner,
            addr,
            source,
        })
}

/// Binds the main port and every connector.
pub async fn bind(config: &Config) -> Result<Bound, ServeError> {
    let main = bind_one(config.main.listen, "main port".into()).await?;
    let metrics = match config.metrics {
        Some(addr) => Some(bind_one(addr, "metrics.listen".into()).await?),
        None => None,
    };
    let mut connectors = Vec::new();
    for r in &config.repositories {
        for wanted in Listen::of(r.connector.as_ref()) {
            connectors.push(BoundConnector::bind(&r.name, wanted).await?);
        }
    }
    Ok(Bound {
        main,
        metrics,
        connectors,
    })
}

/// Writes the bound addresses as JSON, atomically, for whoever waits on the file.
pub fn write_ready_file(path: &Path, bound: &Bound) -> Result<(), ServeError> {
    let err = |source| ServeError::ReadyFile {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bound.addresses().to_string()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Serves until `shutdown` resolves, then drains in-flight requests (with a deadline) on every
/// connection, plain and HTTPS alike.
pub async fn run(
    registry: Arc<Registry>,
    bound: Bound,
    stores: Stores,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Shared by the accept loops only; each connection gets its own `Watcher`, so once the
    // loops have stopped this is ours alone again (audit: connections once held clones of it,
    // and with one HTTPS connection open the drain was skipped).
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let connectors = Arc::new(ConnectorSet::new(
        &registry,
        limits.clone(),
        graceful.clone(),
    ));
    connectors.serve(bound.connectors).await;
    registry.control.attach(connectors.clone());
    registry.events.start();
    let accept = |port: Port| Accept {
        registry: registry.clone(),
        port,
        tls: None,
        header_timeout: limits.header_read_timeout,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        graceful: graceful.clone(),
    };
    let mut tasks = vec![tokio::spawn(
        accept(Port::Main).run(bound.main, stop_rx.clone()),
    )];
    if let Some(socket) = bound.metrics {
        tasks.push(tokio::spawn(
            accept(Port::Metrics).run(socket, stop_rx.clone()),
        ));
    }
    drop(graceful);
    tasks.push(tokio::spawn(tasks::flush_pulls(
        stores.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(tasks::sweep_uploads(
        stores,
        limits.upload_expiry,
        stop_rx.clone(),
    )));
    let lifecycle = registry.lifecycle.clone();
    let stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move { lifecycle.schedule(stop).await }));
    let (replication, repos) = (registry.replication.clone(), registry.clone());
    let stop = stop_rx.clone();
    let (follower, pushes, stop2) = (replication.clone(), repos.clone(), stop_rx.clone());
    tasks.push(tokio::spawn(async move {
        replication.schedule(repos, stop).await
    }));
    tasks.push(tokio::spawn(async move {
        follower.follow_pushes(pushes, stop2).await
    }));
    tasks.push(tokio::spawn(tasks::watch_certificates(
        connectors.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(tasks::follow_settings(
        registry.clone(),
        stop_rx.clone(),
    )));
    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let graceful = connectors.close_all().await;
    let Some(Ok(graceful)) = graceful.map(Arc::try_unwrap) else {
        tracing::error!("accept loops still hold the shutdown handle; not draining");
        return;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; closing remaining connections");
    }
}
