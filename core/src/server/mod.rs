//! Sockets: from a served registry to listening ports.
//!
//! # Layout
//! - `listen.rs`: binds the main port and every connector, starts serving them and the
//!   background tasks, and shuts down gracefully; `accept.rs`: one listener's accept loop and
//!   connections (HTTP/1.1 with hyper, plain or direct HTTPS, capped); `port.rs`: which
//!   listener a request came in on.
//! - `connectors.rs`: connector sockets opened and closed while the core runs (the
//!   [`Ports`](crate::registry::Ports) the control plane drives); `holder.rs` names the
//!   process holding a busy port.
//! - `router.rs`: the short table from (port, path) to a front-end — the registry API, the
//!   admin API, the web UI or the probes — inside one tracing span per request.
//! - `tasks.rs`: background work — the upload sweeper, certificate reloads, settings changed
//!   by other cores.
//!
//! Binding is separate from serving so that a busy port fails start-up with the name of the
//! repository that wanted it, and so that tests can bind port 0 and learn the real addresses
//! (`--ready-file`) before any request is made.

mod accept;
mod connectors;
mod holder;
mod listen;
mod observe;
mod port;
pub mod router;
mod tasks;

use std::io;
use std::net::SocketAddr;

pub use connectors::BoundConnector;
pub use listen::{bind, run, write_ready_file, Bound};
pub use port::Port;
pub use router::handle;

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
    Tls {
        owner: String,
        source: berth_certs::TlsError,
    },
}
