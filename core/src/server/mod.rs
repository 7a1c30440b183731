//! Listeners and connections: binds the main port and every connector, serves HTTP/1.1 on them
//! with hyper, and shuts down gracefully.
//!
//! Binding is separate from serving so that a busy port fails start-up with the name of the
//! repository that wanted it, and so that tests can bind port 0 and learn the real addresses
//! (`--ready-file`) before any request is made.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::api::{Conn, Listener, Registry, RepoEntry};
use crate::config::{Config, RepoKindRaw};
use crate::oci::RepoName;
use crate::repo::HostedRepository;
use crate::storage::Storage;

/// How long a client may take to send its request headers (slowloris guard).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// A start-up failure that names who wanted what.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{owner}: cannot listen on {addr}: {source}")]
    Bind {
        owner: String,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot write ready file {path}: {source}")]
    ReadyFile { path: String, source: io::Error },
}

/// Builds the API layer's view of the configured repositories.
pub fn registry(config: &Config, storage: Arc<dyn Storage>) -> Registry {
    let repos = config
        .repositories
        .iter()
        .map(|r| {
            let repo = match r.kind {
                RepoKindRaw::Hosted => Arc::new(HostedRepository::new(
                    r.name.clone(),
                    storage.clone(),
                    r.write_policy,
                )),
            };
            let entry = RepoEntry {
                repo,
                v1_enabled: r.v1_enabled,
            };
            (r.name.clone(), Arc::new(entry))
        })
        .collect();
    Registry {
        repos,
        context_path: config.main.context_path.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
    }
}

/// Bound sockets, ready to serve.
pub struct Bound {
    pub main: TcpListener,
    pub connectors: Vec<(RepoName, TcpListener)>,
}

impl Bound {
    /// The actual addresses, as written to the ready file.
    pub fn addresses(&self) -> serde_json::Value {
        let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let connectors: BTreeMap<_, _> = self
            .connectors
            .iter()
            .map(|(n, l)| (n.to_string(), addr(l)))
            .collect();
        serde_json::json!({ "main": addr(&self.main), "connectors": connectors })
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
    let mut connectors = Vec::new();
    for r in &config.repositories {
        if let Some(c) = &r.connector {
            let l = bind_one(c.http, format!("repository {} (connector.http)", r.name)).await?;
            connectors.push((r.name.clone(), l));
        }
    }
    Ok(Bound { main, connectors })
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

/// Serves until `shutdown` resolves, then drains in-flight requests (with a deadline).
pub async fn run(registry: Arc<Registry>, bound: Bound, shutdown: impl Future<Output = ()>) {
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut listeners = vec![(Listener::Main, bound.main)];
    for (name, l) in bound.connectors {
        if let Some(entry) = registry.repos.get(&name) {
            listeners.push((Listener::Connector(entry.clone()), l));
        }
    }
    for (listener, socket) in listeners {
        tasks.push(tokio::spawn(accept_loop(
            registry.clone(),
            listener,
            socket,
            graceful.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let graceful = Arc::try_unwrap(graceful).ok();
    if let Some(g) = graceful {
        if tokio::time::timeout(DRAIN_DEADLINE, g.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("drain deadline passed; closing remaining connections");
        }
    }
}

async fn accept_loop(
    registry: Arc<Registry>,
    listener: Listener,
    socket: TcpListener,
    graceful: Arc<GracefulShutdown>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let local = match socket.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "listener has no local address");
            return;
        }
    };
    loop {
        let (stream, peer) = tokio::select! {
            r = socket.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        let listener = listener.clone();
        let conn_info = Conn { peer, local };
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let registry = registry.clone();
            let listener = listener.clone();
            async move {
                let req = req.map(|b| b.map_err(io::Error::other).boxed_unsync());
                Ok::<_, Infallible>(registry.handle(&listener, conn_info, req).await)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
            }
        });
    }
}
