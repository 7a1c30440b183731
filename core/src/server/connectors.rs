//! The connector sockets of a running core, opened and closed while it runs.
//!
//! A repository created through the admin API gets its port at once, a deleted one loses it,
//! and a changed one moves: [`ConnectorSet::sync`] makes a repository's open sockets exactly
//! what its settings name, binding every new address *before* closing anything, so a busy port
//! fails the change with nothing changed. Closing a socket stops its accept loop and frees the
//! port at once; connections already open on it finish their requests (they drain with the
//! rest at shutdown).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use berth_certs::Resolver;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use super::accept::{tls_acceptor, Accept};
use super::port::Port;
use super::ServeError;
use crate::config::Limits;
use crate::oci::RepoName;
use crate::registry::{Listen, PortError, Ports, Registry};

/// A bound socket not yet served.
pub struct BoundConnector {
    pub repo: RepoName,
    pub wanted: Listen,
    pub socket: TcpListener,
    pub tls: Option<Arc<Resolver>>,
}

impl BoundConnector {
    /// Binds one address; the error names the repository and which of its keys asked for it.
    pub async fn bind(repo: &RepoName, wanted: Listen) -> Result<BoundConnector, ServeError> {
        let key = if wanted.tls.is_some() {
            "connector.https"
        } else {
            "connector.http"
        };
        let owner = format!("repository {repo} ({key})");
        let tls = match &wanted.tls {
            Some(files) => Some(Arc::new(
                Resolver::load(repo.as_str(), files.clone(), Vec::new()).map_err(|source| {
                    ServeError::Tls {
                        owner: owner.clone(),
                        source,
                    }
                })?,
            )),
            None => None,
        };
        let socket = TcpListener::bind(wanted.addr)
            .await
            .map_err(|source| ServeError::Bind {
                owner,
                addr: wanted.addr,
                source,
            })?;
        Ok(BoundConnector {
            repo: repo.clone(),
            wanted,
            socket,
            tls,
        })
    }
}

/// A served socket.
struct Open {
    wanted: Listen,
    actual: SocketAddr,
    tls: Option<Arc<Resolver>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Open {
    /// Whether this socket already is what `w` asks for: the same settings, or the address it
    /// got for port 0 now written out.
    fn serves(&self, w: &Listen) -> bool {
        self.wanted == *w || (self.actual == w.addr && self.wanted.tls == w.tls)
    }
}

/// Every connector socket of the core.
pub struct ConnectorSet {
    registry: Weak<Registry>,
    limits: Limits,
    graceful: std::sync::Mutex<Option<Arc<GracefulShutdown>>>,
    open: tokio::sync::Mutex<BTreeMap<RepoName, Vec<Open>>>,
}

impl ConnectorSet {
    pub fn new(registry: &Arc<Registry>, limits: Limits, graceful: Arc<GracefulShutdown>) -> Self {
        ConnectorSet {
            registry: Arc::downgrade(registry),
            limits,
            graceful: std::sync::Mutex::new(Some(graceful)),
            open: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts serving bound sockets.
    pub async fn serve(&self, bound: Vec<BoundConnector>) {
        let mut open = self.open.lock().await;
        for b in bound {
            if let Some(o) = self.start(b) {
                open.entry(o.0).or_default().push(o.1);
            }
        }
    }

    fn start(&self, b: BoundConnector) -> Option<(RepoName, Open)> {
        let registry = self.registry.upgrade()?;
        let graceful = self.graceful.lock().ok()?.clone()?;
        let actual = b.socket.local_addr().unwrap_or(b.wanted.addr);
        let (stop, stop_rx) = watch::channel(false);
        let accept = Accept {
            registry,
            port: Port::Connector(b.repo.clone()),
            tls: b.tls.clone().map(tls_acceptor),
            header_timeout: self.limits.header_read_timeout,
            slots: Arc::new(Semaphore::new(self.limits.max_connections)),
            graceful,
        };
        let task = tokio::spawn(accept.run(b.socket, stop_rx));
        Some((
            b.repo,
            Open {
                wanted: b.wanted,
                actual,
                tls: b.tls,
                stop,
                task,
            },
        ))
    }

    /// Makes `repo`'s open sockets exactly `wanted`: binds every new address first (on a
    /// failure nothing changes), then closes the sockets no longer wanted, then serves the new
    /// ones. Returns the addresses it listens on now.
    pub async fn sync_sockets(
        &self,
        repo: &RepoName,
        wanted: &[Listen],
    ) -> Result<Vec<SocketAddr>, ServeError> {
        let mut open = self.open.lock().await;
        let current = open.remove(repo).unwrap_or_default();
        let mut fresh = Vec::new();
        for w in wanted
            .iter()
            .filter(|w| !current.iter().any(|o| o.serves(w)))
        {
            match BoundConnector::bind(repo, w.clone()).await {
                Ok(b) => fresh.push(b),
                Err(e) => {
                    open.insert(repo.clone(), current);
                    return Err(e);
                }
            }
        }
        let (keep, close): (Vec<Open>, Vec<Open>) = current
            .into_iter()
            .partition(|o| wanted.iter().any(|w| o.serves(w)));
        for o in close {
            let _ = o.stop.send(true);
            let _ = o.task.await;
            tracing::info!(repository = %repo, addr = %o.actual, "connector closed");
        }
        let mut now = keep;
        for b in fresh {
            if let Some((_, o)) = self.start(b) {
                tracing::info!(repository = %repo, addr = %o.actual, "connector opened");
                now.push(o);
            }
        }
        let addrs = now.iter().map(|o| o.actual).collect();
        if !now.is_empty() {
            open.insert(repo.clone(), now);
        }
        Ok(addrs)
    }

    /// What each repository listens on: `(address, direct HTTPS)`.
    pub async fn open_sockets(&self) -> BTreeMap<RepoName, Vec<(SocketAddr, bool)>> {
        let open = self.open.lock().await;
        open.iter()
            .map(|(r, os)| {
                (
                    r.clone(),
                    os.iter().map(|o| (o.actual, o.tls.is_some())).collect(),
                )
            })
            .collect()
    }

    /// The certificates of direct-HTTPS connectors, for reloads and the inventory.
    pub async fn resolvers(&self) -> Vec<(RepoName, Arc<Resolver>)> {
        let open = self.open.lock().await;
        open.iter()
            .flat_map(|(r, os)| os.iter().filter_map(|o| Some((r.clone(), o.tls.clone()?))))
            .collect()
    }

    /// Stops every accept loop (shutdown) and hands back the drain handle.
    pub async fn close_all(&self) -> Option<Arc<GracefulShutdown>> {
        let mut open = self.open.lock().await;
        for (_, os) in std::mem::take(&mut *open) {
            for o in os {
                let _ = o.stop.send(true);
                let _ = o.task.await;
            }
        }
        self.graceful.lock().ok()?.take()
    }
}

/// The control plane's view of the sockets: a busy port names the process that holds it.
#[async_trait::async_trait]
impl Ports for ConnectorSet {
    async fn sync(&self, repo: &RepoName, wanted: &[Listen]) -> Result<(), PortError> {
        self.sync_sockets(repo, wanted)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                ServeError::Bind { addr, source, .. } => PortError::Busy {
                    repo: repo.clone(),
                    addr,
                    reason: source.to_string(),
                    holder: super::holder::port_holder(addr)
                        .unwrap_or_else(|| "another process".to_owned()),
                },
                other => PortError::Other(other.to_string()),
            })
    }

    async fn listening(&self) -> BTreeMap<RepoName, Vec<(SocketAddr, bool)>> {
        self.open_sockets().await
    }

    async fn certificates(&self) -> Vec<berth_certs::CertEntry> {
        self.resolvers()
            .await
            .iter()
            .flat_map(|(_, r)| r.inventory())
            .collect()
    }
}
