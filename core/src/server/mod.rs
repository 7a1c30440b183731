//! From a config to serving sockets.
//!
//! # Layout
//! - `wiring.rs`: builds the API layer's [`Registry`](crate::api::Registry) from the config —
//!   repositories of every kind over the storage, access control. The binary and the in-process
//!   API tests both go through it, so what is tested is what runs.
//! - `listen.rs`: binds the main port and every connector, serves HTTP/1.1 (and direct HTTPS)
//!   with hyper, caps connections, and shuts down gracefully.
//! - `tasks.rs`: background work — the upload sweeper, certificate reloads.
//!
//! Binding is separate from serving so that a busy port fails start-up with the name of the
//! repository that wanted it, and so that tests can bind port 0 and learn the real addresses
//! (`--ready-file`) before any request is made.

mod connectors;
pub mod control;
pub mod directory;
mod holder;
mod listen;
mod tasks;
mod wiring;

use std::io;
use std::net::SocketAddr;

pub use connectors::{BoundConnector, Listen};
pub use control::Control;
pub use listen::{bind, run, write_ready_file, Bound};
pub use wiring::registry;

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
