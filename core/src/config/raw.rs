//! The configuration file as written: the only place that calls `serde_yaml`.
//!
//! Every struct denies unknown keys so that a typo is an error, not a silently ignored setting.
//! Each field's doc comment is the manual; `deploy/core.yaml` repeats it with examples.

use std::net::{IpAddr, SocketAddr};

use serde::Deserialize;

use crate::repo::WritePolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where content lives.
    pub storage: RawStorage,
    /// The main port.
    pub main: RawMain,
    /// Addresses of reverse proxies (the edge) whose `X-Forwarded-*` headers are trusted.
    #[serde(default)]
    pub trusted_proxies: Vec<IpAddr>,
    /// The repositories this core serves.
    #[serde(default)]
    pub repositories: Vec<RawRepository>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Filesystem root; relative to the config file's directory.
    pub root: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    /// Address of the main port, e.g. `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Optional prefix for the admin API and UI, e.g. `/berth`. Never applies to `/v2/`.
    pub context_path: Option<String>,
}

/// Repository kinds. Proxy and group arrive with their own issue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoKindRaw {
    Hosted,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    /// Unique name; one path component of the OCI name grammar.
    pub name: String,
    /// `hosted`.
    pub kind: RepoKindRaw,
    /// The repository's own plain-HTTP port.
    pub connector: Option<RawConnector>,
    /// Serve the V1 `_ping`/`search` endpoints.
    #[serde(default)]
    pub v1_enabled: bool,
    /// `allow_redeploy` (default), `deny_redeploy` or `read_only`.
    #[serde(default)]
    pub write_policy: WritePolicy,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// Plain-HTTP address, e.g. `127.0.0.1:8082` (behind the edge).
    pub http: Option<SocketAddr>,
    /// Direct HTTPS, for running the core without the edge.
    pub https: Option<RawHttps>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// Parses YAML, returning `(key path, reason)` on failure.
pub fn parse(text: &str) -> Result<RawConfig, (String, String)> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            "(top level)".to_owned()
        } else {
            path
        };
        // serde_yaml repeats the path in its message; say it once.
        let reason = e.into_inner().to_string();
        let reason = reason
            .strip_prefix(&format!("{key}: "))
            .map(str::to_owned)
            .unwrap_or(reason);
        (key, reason)
    })
}
