//! Configuration: YAML in, typed config out, in two stages.
//!
//! [`raw`] mirrors the file (serde, `deny_unknown_fields`, parsed by `berth_config::Source`);
//! [`Config::parse`] turns it into types that cannot hold a bad value (`RepoName`,
//! `SocketAddr`, a normalised context path, each repository kind with only its own settings)
//! and checks what spans several keys: unique repository names, no two listeners on one port,
//! group members that exist and form no cycle. Every error names the file, the key and the
//! reason.
//!
//! Each domain owns its settings type (`repo::ProxySettings`, `repo::GroupSettings`,
//! `auth::AuthConfig`); this module depends on them, never the other way round. Parsed
//! network values of its own (`Cidr`) live here, for the front-ends to use.

mod auth;
mod cidr;
mod kinds;
mod ldap;
mod lifecycle;
mod limits;
mod notifications;
mod oidc;
mod policy;
mod raw;
mod replication;
mod repos;
mod storage;

use std::net::SocketAddr;
use std::path::Path;

pub use berth_config::{parse_duration, ConfigError, Source};

use crate::auth::AuthConfig;
use crate::lifecycle::GcSettings;
use crate::oci::RepoName;
use crate::repo::{GroupSettings, ProxySettings, WritePolicy};
use crate::storage::StorageConfig;
pub use cidr::Cidr;
pub use limits::Limits;
pub use repos::{validate as validate_repositories, EntryError};

/// The validated configuration of a core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where blobs and metadata live.
    pub storage: StorageConfig,
    pub main: MainConfig,
    /// Peers whose `X-Forwarded-*` headers are believed (the edge's addresses).
    pub trusted_proxies: Vec<Cidr>,
    pub repositories: Vec<RepoConfig>,
    pub limits: Limits,
    /// `None`: open access (development).
    pub auth: Option<AuthConfig>,
    pub gc: GcSettings,
    /// The config file's `repositories` entries as written: the bootstrap that settings
    /// changed at run time are merged with (by the service layer, `registry/control.rs`).
    pub repository_entries: Vec<serde_json::Value>,
    /// The file, for errors and relative paths of entries created at run time.
    pub source: Source,
    /// The metrics listener (`metrics.listen`), if any.
    pub metrics: Option<SocketAddr>,
    /// Webhooks for push, pull and delete events.
    pub notifications: Vec<crate::events::EndpointSettings>,
    /// Replication rules.
    pub replication: Vec<crate::replicate::Rule>,
}

/// The main port: path routing for every repository, health, and later the admin API and UI.
#[derive(Debug, Clone)]
pub struct MainConfig {
    pub listen: SocketAddr,
    /// `""` or `/segment...` without a trailing slash.
    pub context_path: String,
}

/// One repository.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub name: RepoName,
    pub connector: Option<ConnectorConfig>,
    pub v1_enabled: bool,
    /// With `auth`: unauthenticated clients may pull.
    pub anonymous_pull: bool,
    pub spec: RepoSpec,
    /// Cleanup policies, immutable tags, quota, cache eviction.
    pub lifecycle: crate::lifecycle::policy::RepoLifecycle,
    /// The entry as written (JSON in the config file's shape): what the admin API shows, and
    /// how a change at run time tells which repositories it leaves as they are.
    pub entry: serde_json::Value,
}

/// What kind of repository, with the settings of that kind only.
#[derive(Debug, Clone)]
pub enum RepoSpec {
    Hosted { write_policy: WritePolicy },
    Proxy(ProxySettings),
    Group(GroupSettings),
}

impl RepoSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            RepoSpec::Hosted { .. } => "hosted",
            RepoSpec::Proxy(_) => "proxy",
            RepoSpec::Group(_) => "group",
        }
    }
}

/// A repository's own ports: plain HTTP (behind the edge) and/or direct HTTPS.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<HttpsConfig>,
    /// `scheme://host[:port]` clients use for this port, if given.
    pub external_url: Option<String>,
}

/// A direct HTTPS connector.
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    pub files: berth_certs::CertFiles,
}

fn normalise_context_path(p: &str) -> Result<String, String> {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if !trimmed.starts_with('/') {
        return Err(format!("{p:?} must start with '/'"));
    }
    let ok = trimmed[1..].split('/').all(|seg| {
        !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    });
    if !ok {
        return Err(format!("{p:?} is not a plain URL path"));
    }
    if trimmed == "/v2" || trimmed.starts_with("/v2/") || trimmed == "/v1" {
        return Err(format!("{p:?} would hide the registry API"));
    }
    Ok(trimmed.to_owned())
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (text, source) = Source::read(path)?;
        Config::parse(&text, &source)
    }

    /// Parses configuration text from `source` (its name for errors, its directory for paths).
    pub fn parse(text: &str, source: &Source) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = source.parse(text)?;
        let context_path = normalise_context_path(raw.main.context_path.as_deref().unwrap_or(""))
            .map_err(|r| source.err("main.context_path", r))?;
        let main = MainConfig {
            listen: raw.main.listen,
            context_path,
        };
        let repository_entries = source.parse::<EntriesOnly>(text)?.repositories;
        let metrics = metrics_listen(raw.metrics, &main, source)?;
        let mut repositories = repos::repositories(raw.repositories, &main, source)?;
        for (r, v) in repositories.iter_mut().zip(&repository_entries) {
            r.entry = v.clone();
        }
        kinds::check_groups(&repositories)
            .map_err(|(i, k, reason)| source.err(format!("repositories[{i}].{k}"), reason))?;
        Ok(Config {
            storage: storage::storage(raw.storage, source)?,
            main,
            trusted_proxies: trusted_proxies(raw.trusted_proxies, source)?,
            limits: Limits::from_raw(raw.limits),
            gc: lifecycle::gc_settings(raw.gc, source)?,
            auth: raw
                .auth
                .map(|a| {
                    auth::auth_config(a, source)
                        .map_err(|(k, r)| source.err(format!("auth.{k}"), r))
                })
                .transpose()?,
            repository_entries,
            source: source.clone(),
            metrics,
            notifications: notifications::endpoints(raw.notifications, source)?,
            replication: replication::rules(raw.replication, &repositories, source)?,
            repositories,
        })
    }
}

/// One replication rule in the config file's shape (a `replication` entry as JSON, as the
/// admin API takes it), checked against `repos` like the file's own.
pub fn replication_rule(
    entry: &serde_json::Value,
    repos: &[RepoConfig],
    source: &Source,
) -> Result<crate::replicate::Rule, ConfigError> {
    let raw: raw::RawReplication = serde_path_to_error::deserialize(entry.clone())
        .map_err(|e| source.err(format!("replication.{}", e.path()), e.inner().to_string()))?;
    let mut rules = replication::rules(vec![raw], repos, source)?;
    Ok(rules.remove(0))
}

/// The metrics listener, which may not share the main port.
fn metrics_listen(
    raw: Option<raw::RawMetrics>,
    main: &MainConfig,
    source: &Source,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(m) = raw else { return Ok(None) };
    if m.listen.port() != 0 && m.listen.port() == main.listen.port() {
        return Err(source.err(
            "metrics.listen",
            format!(
                "{} is the main port; metrics need a port of their own",
                m.listen
            ),
        ));
    }
    Ok(Some(m.listen))
}

/// The `repositories` list alone, entries kept as JSON.
#[derive(serde::Deserialize)]
struct EntriesOnly {
    #[serde(default)]
    repositories: Vec<serde_json::Value>,
}

/// Absent means an edge on the same host, the documented setup (Tomcat's RemoteIpValve and
/// most frameworks trust loopback by default too); an explicit `[]` trusts nobody.
fn trusted_proxies(raw: Option<Vec<String>>, source: &Source) -> Result<Vec<Cidr>, ConfigError> {
    raw.unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1".into()])
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.parse::<Cidr>()
                .map_err(|r| source.err(format!("trusted_proxies[{i}]"), r))
        })
        .collect()
}

#[cfg(test)]
mod tests;
