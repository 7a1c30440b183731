//! The edge's configuration file as written: the only caller of `serde_yaml` in this crate.
//! Unknown keys are errors (pingora's own YAML silently ignores typos; ours does not).

use std::net::SocketAddr;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the edge keeps generated development certificates.
    pub state_dir: Option<String>,
    /// Worker threads for the proxy service.
    pub threads: Option<usize>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub drain_seconds: Option<u64>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Milliseconds between upstream health checks.
    pub health_check_interval_ms: Option<u64>,
    /// Extra DNS names for the generated development certificate (localhost is always in).
    #[serde(default)]
    pub dev_cert_names: Vec<String>,
    pub listeners: Vec<RawListener>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect_seconds: Option<u64>,
    pub read_seconds: Option<u64>,
    pub write_seconds: Option<u64>,
    pub idle_seconds: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    /// Name for logs; defaults to the address.
    pub name: Option<String>,
    /// External address, e.g. `0.0.0.0:5443`.
    pub listen: SocketAddr,
    /// The port clients use, if a NAT or load balancer maps it (defaults to `listen`'s).
    pub external_port: Option<u16>,
    /// Default certificate; generated for development when absent.
    pub tls: Option<RawCert>,
    /// More certificates, chosen by SNI.
    #[serde(default)]
    pub sni: Vec<RawSniCert>,
    /// Core connectors (`host:port`) for requests that match no `hosts` entry.
    #[serde(default)]
    pub upstreams: Vec<String>,
    /// Subdomain routing: host names to their own connectors.
    #[serde(default)]
    pub hosts: Vec<RawHostRoute>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSniCert {
    pub names: Vec<String>,
    pub cert: String,
    pub key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHostRoute {
    pub names: Vec<String>,
    pub upstreams: Vec<String>,
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
