//! In-process API tests: the real router and handlers, wired from YAML exactly as the binary
//! wires them, over in-memory storage, no sockets. One test binary, a module per area.

// Helpers in a test crate panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

mod harness;
mod manifests;
mod routing;
mod uploads;
