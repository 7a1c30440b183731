//! The edge in front of the core, over real HTTPS with a CA made by `berth-certs`: forwarding
//! headers, real clients with certificate verification, SNI, certificate rotation, failover,
//! streaming of large uploads, start-up errors and draining shutdown. One test binary, a
//! module per area.

mod clients;
mod forwarding;
mod harness;
mod streaming;
mod tls;
