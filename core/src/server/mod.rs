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

use berth_certs::Resolver;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use crate::api::{Conn, Listener, Registry, RepoEntry};
use crate::auth::Auth;
use crate::config::{Config, Limits, RepoKindRaw};
use crate::oci::RepoName;
use crate::repo::{GroupRepository, HostedRepository, ProxyRepository, Repository};
use crate::storage::Storage;

/// How often direct-HTTPS certificate files are checked for changes.
const CERT_POLL: Duration = Duration::from_secs(2);
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
    #[error("{owner}: {source}")]
    Repository { owner: String, source: io::Error },
    #[error("{owner}: {source}")]
    Tls {
        owner: String,
        source: berth_certs::TlsError,
    },
}

/// Builds the API layer's view of the configured repositories.
pub fn registry(config: &Config, storage: Arc<dyn Storage>) -> Result<Registry, ServeError> {
    let mut built: BTreeMap<RepoName, Arc<dyn Repository>> = BTreeMap::new();
    // Hosted and proxy repositories first; then groups, each once all its members exist
    // (config validation has ruled out cycles, so this terminates).
    for r in &config.repositories {
        let repo: Arc<dyn Repository> = match (r.kind, &r.proxy) {
            (RepoKindRaw::Hosted, _) => Arc::new(
                HostedRepository::new(r.name.clone(), storage.clone(), r.write_policy)
                    .with_upload_limits(config.limits.uploads),
            ),
            (RepoKindRaw::Proxy, Some(settings)) => Arc::new(
                ProxyRepository::new(r.name.clone(), storage.clone(), settings.clone()).map_err(
                    |source| ServeError::Repository {
                        owner: format!("repository {}", r.name),
                        source,
                    },
                )?,
            ),
            _ => continue,
        };
        built.insert(r.name.clone(), repo);
    }
    let mut pending: Vec<_> = config
        .repositories
        .iter()
        .filter(|r| r.group.is_some())
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|r| {
            let Some(g) = &r.group else { return false };
            let members: Option<Vec<_>> = g.members.iter().map(|m| built.get(m).cloned()).collect();
            let Some(members) = members else { return true };
            let writable = g
                .writable_member
                .as_ref()
                .and_then(|w| built.get(w).cloned());
            built.insert(
                r.name.clone(),
                Arc::new(GroupRepository::new(r.name.clone(), members, writable)),
            );
            false
        });
        if pending.len() == before {
            break;
        }
    }
    let repos = config
        .repositories
        .iter()
        .filter_map(|r| {
            let repo = built.get(&r.name)?.clone();
            Some((
                r.name.clone(),
                Arc::new(RepoEntry {
                    repo,
                    v1_enabled: r.v1_enabled,
                    write_repo: match r.kind {
                        RepoKindRaw::Hosted => Some(r.name.clone()),
                        RepoKindRaw::Group => {
                            r.group.as_ref().and_then(|g| g.writable_member.clone())
                        }
                        RepoKindRaw::Proxy => None,
                    },
                }),
            ))
        })
        .collect();
    let auth = match &config.auth {
        Some(a) => {
            let anonymous = config
                .repositories
                .iter()
                .filter(|r| r.anonymous_pull)
                .map(|r| r.name.clone())
                .collect();
            let keys = config.storage_root.join("auth");
            let auth = Auth::new(a, anonymous, &keys).map_err(|source| ServeError::Repository {
                owner: format!("auth (token key in {})", keys.display()),
                source,
            })?;
            Some(Arc::new(auth))
        }
        None => {
            tracing::warn!("no auth section in the config: anyone may push, pull and delete (development only)");
            None
        }
    };
    Ok(Registry {
        repos,
        context_path: config.main.context_path.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        body_idle_timeout: config.limits.body_idle_timeout,
        auth,
    })
}

/// A bound connector socket; `tls` is set for direct HTTPS.
pub struct BoundConnector {
    pub repo: RepoName,
    pub socket: TcpListener,
    pub tls: Option<Arc<Resolver>>,
}

/// Bound sockets, ready to serve.
pub struct Bound {
    pub main: TcpListener,
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
    let mut connectors = Vec::new();
    for r in &config.repositories {
        let Some(c) = &r.connector else { continue };
        if let Some(http) = c.http {
            let socket = bind_one(http, format!("repository {} (connector.http)", r.name)).await?;
            connectors.push(BoundConnector {
                repo: r.name.clone(),
                socket,
                tls: None,
            });
        }
        if let Some(https) = &c.https {
            let owner = format!("repository {} (connector.https)", r.name);
            let resolver = Resolver::load(r.name.as_str(), https.files.clone(), Vec::new())
                .map_err(|source| ServeError::Tls {
                    owner: owner.clone(),
                    source,
                })?;
            let socket = bind_one(https.listen, owner).await?;
            connectors.push(BoundConnector {
                repo: r.name.clone(),
                socket,
                tls: Some(Arc::new(resolver)),
            });
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
pub async fn run(
    registry: Arc<Registry>,
    bound: Bound,
    storage: Arc<dyn Storage>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    let mut listeners = vec![(Listener::Main, bound.main, None)];
    let mut resolvers = Vec::new();
    for c in bound.connectors {
        if let Some(entry) = registry.repos.get(&c.repo) {
            let acceptor = c.tls.as_ref().map(|r| {
                resolvers.push(r.clone());
                tls_acceptor(r.clone())
            });
            listeners.push((Listener::Connector(entry.clone()), c.socket, acceptor));
        }
    }
    for (listener, socket, tls) in listeners {
        tasks.push(tokio::spawn(accept_loop(
            registry.clone(),
            listener,
            socket,
            tls,
            limits.header_read_timeout,
            graceful.clone(),
            stop_rx.clone(),
        )));
    }
    tasks.push(tokio::spawn(sweep_uploads(
        storage,
        limits.upload_expiry,
        stop_rx.clone(),
    )));
    if !resolvers.is_empty() {
        tasks.push(tokio::spawn(watch_certificates(resolvers, stop_rx.clone())));
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

/// A rustls acceptor over a reloadable resolver. The core speaks HTTP/1.1 only.
fn tls_acceptor(resolver: Arc<Resolver>) -> TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
    .map(|b| b.with_no_client_auth().with_cert_resolver(resolver.clone()))
    .unwrap_or_else(|_| {
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(resolver)
    });
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Reloads direct-HTTPS certificates when their files change; a broken file keeps the old one.
async fn watch_certificates(
    resolvers: Vec<Arc<Resolver>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(CERT_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        for r in &resolvers {
            if r.changed() {
                if let Err(e) = r.reload() {
                    tracing::error!(repository = %r.listener(), error = %e,
                        "certificate reload failed; the previous certificate keeps serving");
                }
            }
        }
    }
}

/// Removes upload sessions nobody has touched for `expiry` (abandoned pushes would otherwise
/// hold disk space and count against the per-repository cap forever).
async fn sweep_uploads(
    storage: Arc<dyn Storage>,
    expiry: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let period = (expiry / 4).clamp(Duration::from_millis(200), Duration::from_secs(300));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let uploads = match storage.uploads().await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list upload sessions");
                continue;
            }
        };
        for u in uploads.into_iter().filter(|u| u.idle >= expiry) {
            match storage.upload_cancel(&u.namespace, &u.id).await {
                Ok(()) => {
                    tracing::info!(session = %u.id, namespace = %u.namespace.path(), idle_s = u.idle.as_secs(), "removed an abandoned upload session")
                }
                Err(e) => {
                    tracing::warn!(session = %u.id, error = %e, "cannot remove an abandoned upload session")
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn accept_loop(
    registry: Arc<Registry>,
    listener: Listener,
    socket: TcpListener,
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
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
        let conn_info = Conn {
            peer,
            local,
            tls: tls.is_some(),
        };
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let registry = registry.clone();
            let listener = listener.clone();
            async move {
                let req = req.map(|b| b.map_err(io::Error::other).boxed_unsync());
                Ok::<_, Infallible>(registry.handle(&listener, conn_info, req).await)
            }
        });
        let builder = {
            let mut b = hyper::server::conn::http1::Builder::new();
            b.timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            b
        };
        match &tls {
            None => {
                let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
                    }
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let graceful = graceful.clone();
                tokio::spawn(async move {
                    // The handshake gets the same bound as the request headers.
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, peer = %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(peer = %peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let conn =
                        graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
                    if let Err(e) = conn.await {
                        tracing::debug!(error = %e, peer = %peer, "connection ended with an error");
                    }
                });
            }
        }
    }
}
