//! What the service layer asks of the socket layer: open and close a repository's connector
//! ports while the core runs, say what listens where, and which certificates direct-HTTPS
//! connectors serve. `server::connectors` implements it; the control plane only sees this.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use async_trait::async_trait;

use crate::config::ConnectorConfig;
use crate::oci::RepoName;

/// One address a connector listens on, as the settings name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub tls: Option<berth_certs::CertFiles>,
}

impl Listen {
    /// The addresses a repository's connector settings name.
    pub fn of(c: Option<&ConnectorConfig>) -> Vec<Listen> {
        let Some(c) = c else { return Vec::new() };
        let plain = c.http.map(|addr| Listen { addr, tls: None });
        let https = c.https.as_ref().map(|h| Listen {
            addr: h.listen,
            tls: Some(h.files.clone()),
        });
        plain.into_iter().chain(https).collect()
    }
}

/// Why ports could not be made what the settings name; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// The address is taken: by whom, if the system says.
    #[error("port {} ({addr}) is not free for repository {repo}: {reason}; {holder} holds it", addr.port())]
    Busy {
        repo: RepoName,
        addr: SocketAddr,
        reason: String,
        holder: String,
    },
    /// Anything else (a certificate that does not load), naming the key.
    #[error("{0}")]
    Other(String),
}

/// The connector sockets of a running core.
#[async_trait]
pub trait Ports: Send + Sync {
    /// Makes `repo`'s open sockets exactly `wanted`, binding every new address before closing
    /// anything (on a failure nothing changes).
    async fn sync(&self, repo: &RepoName, wanted: &[Listen]) -> Result<(), PortError>;
    /// What each repository listens on: `(address, direct HTTPS)`.
    async fn listening(&self) -> BTreeMap<RepoName, Vec<(SocketAddr, bool)>>;
    /// Every certificate direct-HTTPS connectors serve now (the last reload's result included).
    async fn certificates(&self) -> Vec<berth_certs::CertEntry>;
}
