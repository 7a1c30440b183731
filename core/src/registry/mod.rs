//! The service layer: what a running core serves, and every change made to it while it runs.
//!
//! The front-ends — the registry API (`api/`), the admin API (`admin/`) and the web UI
//! (`ui/`) — are siblings over this layer and never import each other; `server/` owns the
//! sockets and routes each request to one of them. Nothing here knows of HTTP or sockets:
//! connector ports are opened and closed through the [`Ports`] trait the socket layer
//! implements.
//!
//! # Layout
//! - this file: [`Registry`], the state every request reads — the repository map (replaced
//!   whole on a change, so a request keeps what it resolved), access control, life-cycle,
//!   events and the run-time control plane.
//! - `wiring.rs`: builds the registry from a config (the binary and the in-process API tests
//!   both go through it, so what is tested is what runs).
//! - `control.rs`: repositories created, changed and deleted at run time; `directory.rs`: users,
//!   roles and API tokens the same way.
//! - `content.rs`: tags and manifests deleted or restored from the admin API and the UI.
//! - `ports.rs`: what the service layer asks of the socket layer.
//! - `audit.rs`: the audit line every change writes.

pub mod audit;
pub mod content;
pub mod control;
pub mod directory;
mod ports;
mod replication;
mod wiring;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Cidr;
use crate::oci::RepoName;
use crate::repo::Repository;
pub use control::Control;
pub use ports::{Listen, PortError, Ports};
pub use wiring::{registry, BuildError};

/// A repository as the front-ends see it.
pub struct RepoEntry {
    pub repo: Arc<dyn Repository>,
    pub v1_enabled: bool,
    /// Where writes land, for privilege checks: the repository itself if hosted, a group's
    /// writable member, `None` for a proxy.
    pub write_repo: Option<RepoName>,
    /// Mirror mode (groups): the repository serving each upstream named in `?ns=`.
    pub mirrors: BTreeMap<String, RepoName>,
    /// The settings it was built from.
    pub config: crate::config::RepoConfig,
}

/// The repositories served, by name; replaced whole when one changes at run time.
pub type RepoMap = BTreeMap<RepoName, Arc<RepoEntry>>;

/// Everything a core serves.
pub struct Registry {
    pub(crate) repos: std::sync::RwLock<Arc<RepoMap>>,
    /// The main port's path prefix (never part of connector URLs).
    pub context_path: String,
    /// Peers whose `X-Forwarded-*` headers are believed (the edge).
    pub trusted_proxies: Vec<Cidr>,
    /// A request body that stalls this long is abandoned (slowloris bodies).
    pub body_idle_timeout: std::time::Duration,
    /// Access control; `None` is open access (a config without `auth`).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Garbage collection, undo, usage.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Changes at run time: repositories, users, roles, tokens.
    pub control: Arc<Control>,
    /// Push, pull and delete events for the configured webhooks.
    pub events: Arc<crate::events::Notifier>,
    /// Replication rules and their runs.
    pub replication: Arc<crate::replicate::Replicator>,
}

/// Replication reads and writes the repositories served now.
impl crate::replicate::Repos for Registry {
    fn repository(&self, name: &RepoName) -> Option<Arc<dyn crate::repo::Repository>> {
        self.repos().get(name).map(|e| e.repo.clone())
    }
}

/// The repositories served at one moment, for work that outlives the request that started it
/// (a replication run begun through the admin API).
pub struct Served(pub Arc<RepoMap>);

impl crate::replicate::Repos for Served {
    fn repository(&self, name: &RepoName) -> Option<Arc<dyn crate::repo::Repository>> {
        self.0.get(name).map(|e| e.repo.clone())
    }
}

impl Registry {
    /// The repositories served now.
    pub fn repos(&self) -> Arc<RepoMap> {
        self.repos
            .read()
            .map_or_else(|p| p.into_inner().clone(), |r| r.clone())
    }

    /// Serves `repos` from now on (requests in flight finish with what they resolved).
    pub fn install(&self, repos: RepoMap) {
        let mut r = self.repos.write().unwrap_or_else(|p| p.into_inner());
        *r = Arc::new(repos);
    }
}
