//! Berth's registry core.
//!
//! # Layout
//! - [`oci`]: the spec's vocabulary (digests, names, references, manifests, error codes); pure.
//! - [`storage`]: the [`storage::BlobStore`] (bytes) and [`storage::MetadataStore`] (everything
//!   about them, in SQLite or PostgreSQL) traits and their backends.
//! - [`repo`]: the [`repo::Repository`] trait and the hosted kind; knows the registry's rules.
//! - [`api`]: HTTP routing and handlers; knows status codes and headers.
//! - [`server`]: sockets, connections, shutdown, and changes at run time (`server::control`).
//! - [`ui`]: the web UI on the main port, server-rendered.
//! - [`auth`]: users, roles, passwords and bearer tokens.
//! - [`config`]: the YAML file, parsed into types.
//! - [`events`]: push, pull and delete events to webhooks; [`metrics`]: Prometheus.
//! - [`net`]: the outbound HTTPS client (proxy remotes, event endpoints).
//!
//! Each layer knows only the one below it: storage never sees a status code, and handlers
//! never see a file path.

pub mod api;
pub mod auth;
pub mod config;
pub mod events;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod oci;
pub mod repo;
pub mod server;
pub mod storage;
pub mod ui;
