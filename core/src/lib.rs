//! Berth's registry core.
//!
//! # Layout
//! - [`oci`]: the spec's vocabulary (digests, names, references, manifests, error codes); pure.
//! - [`storage`]: the [`storage::BlobStore`] (bytes) and [`storage::MetadataStore`] (everything
//!   about them, in SQLite or PostgreSQL) traits and their backends.
//! - [`repo`]: the [`repo::Repository`] trait and the hosted kind; knows the registry's rules.
//! - [`registry`]: the service layer — what a core serves, and every change made to it at run
//!   time (repositories, users, roles, tokens), the audit trail; no HTTP, no sockets.
//! - three sibling front-ends over it, none importing another: [`api`] (the registry API, V2
//!   and V1), [`admin`] (the JSON admin API), [`ui`] (the web UI, server-rendered); [`http`]
//!   holds the helpers they share.
//! - [`server`]: sockets, connections, shutdown, and the router from (port, path) to a
//!   front-end.
//! - [`auth`]: users, roles, passwords and bearer tokens.
//! - [`config`]: the YAML file, parsed into types.
//! - [`events`]: push, pull and delete events to webhooks; [`metrics`]: Prometheus.
//! - [`net`]: the outbound HTTPS client (proxy remotes, event endpoints, OIDC issuers,
//!   replication remotes).
//! - [`replicate`]: rules that copy images to and from other V2 registries.
//! - [`process`]: one core process start to end (stores, service layer, sockets); the
//!   binary's `main.rs` only parses the command line.
//!
//! Each layer knows only the ones below it: storage never sees a status code, handlers never
//! see a file path, and the service layer never sees a request.

pub mod admin;
pub mod api;
pub mod auth;
pub mod config;
pub mod events;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod oci;
pub mod process;
pub mod registry;
pub mod replicate;
pub mod repo;
pub mod server;
pub mod storage;
pub mod ui;
