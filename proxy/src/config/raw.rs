//! The edge's configuration file as written (parsed by `berth_config::Source`, shared with the
//! core). Unknown keys are errors (pingora's own YAML silently ignores typos; ours does not).
//! Durations are written as in `core.yaml`: `250ms`, `90s`, `30m`, `24h`.

use std::net::SocketAddr;

use berth_config::Duration;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the edge keeps generated development certificates.
    pub state_dir: Option<String>,
    /// Worker threads for the proxy service.
    pub threads: Option<usize>,
    /// How long in-flight requests get to finish after SIGTERM (default `30s`).
    pub drain_timeout: Option<Duration>,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: RawTimeouts,
    /// Time between upstream health checks (default `1s`, at least `100ms`).
    pub health_check_interval: Option<Duration>,
    /// How an upstream is checked: `readyz` (default: `GET /readyz` on the connector answers
    /// 200, so a core that lost its database or bucket leaves the pool) or `tcp` (it accepts
    /// connections; for upstreams that are not Berth cores).
    pub health_check: Option<super::HealthCheck>,
    /// Extra DNS names for the generated development certificate (localhost is always in).
    #[serde(default)]
    pub dev_cert_names: Vec<String>,
    /// The metrics listener (`/metrics`, `/healthz`, `/readyz`, `/certs`), plain HTTP.
    pub metrics: Option<RawMetrics>,
    pub listeners: Vec<RawListener>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: SocketAddr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    /// Connecting to a core (default `5s`).
    pub connect: Option<Duration>,
    /// Longest wait for bytes from a core (default `900s`).
    pub read: Option<Duration>,
    /// Longest wait to send bytes to a core (default `900s`).
    pub write: Option<Duration>,
    /// Idle pooled upstream connections are closed after this (default `60s`).
    pub idle: Option<Duration>,
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

/// `tls`: either files (`cert` and `key`) or `acme`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub acme: Option<RawAcme>,
}

/// Certificates issued and renewed by ACME (RFC 8555).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// The CA's directory URL.
    pub directory: String,
    /// DNS names: the SANs of one certificate.
    pub domains: Vec<String>,
    /// Contact URIs for the account (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<String>,
    /// `tls-alpn-01` (default; answered on this listener) or `http-01`.
    pub challenge: Option<String>,
    /// Trust for the ACME server's own HTTPS (an internal CA), beside the system roots.
    pub ca_file: Option<String>,
    /// http-01: the plain-HTTP listener that answers `/.well-known/acme-challenge/`
    /// (default `0.0.0.0:80`).
    pub http_listen: Option<SocketAddr>,
    /// Renew this long before expiry (default: when a third of the lifetime is left).
    pub renew_before: Option<Duration>,
    /// External account binding (RFC 8555 §7.3.4), for CAs that register only accounts
    /// they have issued a key id and MAC key for.
    pub eab: Option<RawEab>,
}

/// `tls.acme.eab`: the key id and the HMAC key the CA issued, base64url as CAs hand it out,
/// from a file or an environment variable (never inline in the config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEab {
    pub kid: String,
    pub hmac_key_file: Option<String>,
    pub hmac_key_env: Option<String>,
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
