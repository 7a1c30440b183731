//! Berth's edge: HTTPS termination in front of the registry core's plain-HTTP connectors.
//!
//! # Layout
//! - [`config`]: the YAML file, parsed into types (through `berth_config`, shared with the core).
//! - certificates: `berth_certs::Resolver` per listener; validated up front, reloaded in place.
//! - [`routing`]: local port → listener, `Host` → pool of core connectors (health-checked).
//! - [`edge`]: the pingora `ProxyHttp` logic: forwarding headers, retries, access log.
//! - [`lifecycle`]: health checks, certificate watching, ready file, draining shutdown.
//! - [`plain_http`]: a readable 400 for plain HTTP sent to a TLS port.
//! - [`metrics`], [`observe`], [`tls_observe`]: Prometheus metrics, health and the certificate
//!   inventory on the metrics listener; handshake counting.
//! - [`run`]: the edge assembled and served until a shutdown (signals, or a future in tests);
//!   [`start`]: certificates loaded up front and the typed start-up errors.
//! - [`commands`], [`inventory`]: `check-config`, `certs`, `renew`.
//! - [`acme`]: certificates issued and renewed by ACME, challenges answered by the edge.
//!
//! One pingora service carries every listener (a service per port would cost a runtime and its
//! threads each); the connection's local port selects the route.

pub mod acme;
pub mod commands;
pub mod config;
pub mod edge;
pub mod inventory;
pub mod lifecycle;
pub mod metrics;
pub mod observe;
pub mod plain_http;
pub mod routing;
pub mod run;
pub mod start;
pub mod tls_observe;

pub use run::{run, Listeners, Shutdown};
