//! The edge's configuration: YAML in, typed config out. Every error names the file, the key
//! and the reason; cross-key checks (duplicate ports, listeners with nowhere to send traffic)
//! happen here so that start-up never half-succeeds.

mod raw;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use berth_config::{ConfigError, Source};

pub use berth_certs::{CertFiles, SniCert};

#[derive(Debug, Clone)]
pub struct HostRoute {
    /// Lower-case host names, without port.
    pub names: Vec<String>,
    pub upstreams: Vec<SocketAddr>,
}

/// The ACME challenge the CA validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// TLS-ALPN-01 (RFC 8737), answered on the listener's own port.
    TlsAlpn01,
    /// HTTP-01, answered on a plain-HTTP listener (port 80).
    Http01,
}

/// `tls: { acme: ... }`.
#[derive(Debug, Clone)]
pub struct AcmeSettings {
    pub directory: String,
    /// Lower-case DNS names.
    pub domains: Vec<String>,
    pub contact: Vec<String>,
    pub challenge: Challenge,
    pub ca_file: Option<PathBuf>,
    pub http_listen: SocketAddr,
    pub renew_before: Option<Duration>,
    pub eab: Option<Eab>,
}

/// An external account binding: the CA's key id and the decoded HMAC key.
#[derive(Clone)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: Vec<u8>,
}

impl std::fmt::Debug for Eab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eab")
            .field("kid", &self.kid)
            .field("hmac_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub external_port: u16,
    /// `None` (and no `acme`) means "use the development certificate".
    pub tls: Option<CertFiles>,
    /// Certificates by ACME instead of files.
    pub acme: Option<AcmeSettings>,
    pub sni: Vec<SniCert>,
    pub upstreams: Vec<SocketAddr>,
    pub hosts: Vec<HostRoute>,
}

#[derive(Debug, Clone)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub write: Duration,
    pub idle: Duration,
}

/// How the edge checks that an upstream can take requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheck {
    /// `GET /readyz` answers 200: the core's database and blob store answer.
    #[default]
    Readyz,
    /// The upstream accepts TCP connections.
    Tcp,
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub state_dir: PathBuf,
    pub threads: usize,
    pub drain: Duration,
    pub timeouts: Timeouts,
    pub health_check_interval: Duration,
    pub health_check: HealthCheck,
    pub dev_cert_names: Vec<String>,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/certs` are served; `None` turns metrics off.
    pub metrics: Option<SocketAddr>,
    pub listeners: Vec<ListenerConfig>,
}

/// Resolves `host:port` (a literal address or a name, e.g. a compose service) to addresses.
fn upstream_addrs(list: &[String]) -> Result<Vec<SocketAddr>, (usize, String)> {
    use std::net::ToSocketAddrs;
    let mut out = Vec::new();
    for (i, u) in list.iter().enumerate() {
        let addrs = u
            .to_socket_addrs()
            .map_err(|e| (i, format!("{u:?} is not a reachable host:port: {e}")))?;
        for a in addrs {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    Ok(out)
}

impl ProxyConfig {
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
        let (text, source) = Source::read(path)?;
        ProxyConfig::parse(&text, &source)
    }

    pub fn parse(text: &str, source: &Source) -> Result<ProxyConfig, ConfigError> {
        let raw: raw::RawConfig = source.parse(text)?;
        if raw.listeners.is_empty() {
            return Err(source.err("listeners", "at least one listener is needed"));
        }
        let mut ports: HashMap<u16, String> = HashMap::new();
        let mut listeners = Vec::new();
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let l = listener(l, &mut ports, source)
                .map_err(|(k, r)| source.err(format!("listeners[{i}].{k}"), r))?;
            listeners.push(l);
        }
        let metrics = raw.metrics.map(|m| m.listen);
        if let Some(m) = metrics {
            if let Some(other) = ports.get(&m.port()) {
                return Err(source.err(
                    "metrics.listen",
                    format!("port {} is already used by listener {other}", m.port()),
                ));
            }
        }
        let t = raw.timeouts;
        let or = |d: Option<berth_config::Duration>, default: u64| {
            d.map_or(Duration::from_secs(default), Into::into)
        };
        Ok(ProxyConfig {
            state_dir: source.resolve(raw.state_dir.as_deref().unwrap_or("./state")),
            threads: raw.threads.unwrap_or(2).max(1),
            drain: or(raw.drain_timeout, 30),
            timeouts: Timeouts {
                connect: or(t.connect, 5),
                read: or(t.read, 900),
                write: or(t.write, 900),
                idle: or(t.idle, 60),
            },
            health_check_interval: or(raw.health_check_interval, 1).max(Duration::from_millis(100)),
            health_check: raw.health_check.unwrap_or_default(),
            dev_cert_names: raw.dev_cert_names,
            metrics,
            listeners,
        })
    }
}

/// One listener; `ports` holds the ports earlier listeners took. Errors are `(key, reason)`
/// under `listeners[i]`.
fn listener(
    l: raw::RawListener,
    ports: &mut HashMap<u16, String>,
    source: &Source,
) -> Result<ListenerConfig, (String, String)> {
    let name = l.name.unwrap_or_else(|| l.listen.to_string());
    if l.listen.port() == 0 {
        return Err((
            "listen".into(),
            "a fixed port is needed (0 is not allowed)".into(),
        ));
    }
    if let Some(other) = ports.insert(l.listen.port(), name.clone()) {
        return Err((
            "listen".into(),
            format!(
                "port {} is already used by listener {other}",
                l.listen.port()
            ),
        ));
    }
    if l.upstreams.is_empty() && l.hosts.is_empty() {
        return Err((
            "upstreams".into(),
            "no upstreams and no hosts: nowhere to send requests".into(),
        ));
    }
    let upstreams =
        upstream_addrs(&l.upstreams).map_err(|(j, r)| (format!("upstreams[{j}]"), r))?;
    let mut hosts = Vec::new();
    for (j, h) in l.hosts.iter().enumerate() {
        if h.upstreams.is_empty() || h.names.is_empty() {
            return Err((format!("hosts[{j}]"), "needs names and upstreams".into()));
        }
        let addrs = upstream_addrs(&h.upstreams)
            .map_err(|(k, r)| (format!("hosts[{j}].upstreams[{k}]"), r))?;
        hosts.push(HostRoute {
            names: h.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            upstreams: addrs,
        });
    }
    let files = |cert: &str, key: &str| CertFiles {
        cert: source.resolve(cert),
        key: source.resolve(key),
    };
    let (tls, acme) = match &l.tls {
        None => (None, None),
        Some(t) => tls_source(t, source)?,
    };
    Ok(ListenerConfig {
        external_port: l.external_port.unwrap_or(l.listen.port()),
        listen: l.listen,
        tls,
        acme,
        sni: l
            .sni
            .iter()
            .map(|s| SniCert {
                names: s.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                files: files(&s.cert, &s.key),
            })
            .collect(),
        upstreams,
        hosts,
        name,
    })
}

/// `tls`: files or ACME, not both; errors are `(key, reason)` under the listener.
fn tls_source(
    t: &raw::RawCert,
    source: &Source,
) -> Result<(Option<CertFiles>, Option<AcmeSettings>), (String, String)> {
    match (&t.cert, &t.key, &t.acme) {
        (Some(c), Some(k), None) => Ok((
            Some(CertFiles {
                cert: source.resolve(c),
                key: source.resolve(k),
            }),
            None,
        )),
        (None, None, Some(a)) => Ok((None, Some(acme(a, source)?))),
        (_, _, Some(_)) => Err((
            "tls.acme".into(),
            "use either cert and key or acme, not both".into(),
        )),
        _ => Err(("tls".into(), "needs both cert and key (or acme)".into())),
    }
}

fn acme(a: &raw::RawAcme, source: &Source) -> Result<AcmeSettings, (String, String)> {
    let bad = |k: &str, r: String| (format!("tls.acme.{k}"), r);
    let url: http::Uri = a
        .directory
        .parse()
        .map_err(|e| bad("directory", format!("{:?} is not a URL: {e}", a.directory)))?;
    if url.scheme_str() != Some("https") {
        return Err(bad(
            "directory",
            format!("{:?} must be an https:// URL (RFC 8555)", a.directory),
        ));
    }
    if a.domains.is_empty() {
        return Err(bad("domains", "at least one DNS name is needed".into()));
    }
    for (i, d) in a.domains.iter().enumerate() {
        let ok = !d.is_empty()
            && d.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(bad(
                &format!("domains[{i}]"),
                format!("{d:?} is not a DNS name"),
            ));
        }
    }
    let challenge = match a.challenge.as_deref() {
        None | Some("tls-alpn-01") => Challenge::TlsAlpn01,
        Some("http-01") => Challenge::Http01,
        Some(other) => {
            return Err(bad(
                "challenge",
                format!("{other:?} is not tls-alpn-01 or http-01"),
            ))
        }
    };
    Ok(AcmeSettings {
        directory: a.directory.clone(),
        domains: a.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        contact: a.contact.clone(),
        challenge,
        ca_file: a.ca_file.as_deref().map(|p| source.resolve(p)),
        http_listen: a.http_listen.unwrap_or_else(|| ([0, 0, 0, 0], 80).into()),
        renew_before: a.renew_before.map(Into::into),
        eab: a.eab.as_ref().map(|e| eab(e, source)).transpose()?,
    })
}

/// Reads and decodes the binding's HMAC key (base64url, padded or not, surrounding space ignored).
fn eab(e: &raw::RawEab, source: &Source) -> Result<Eab, (String, String)> {
    use base64::Engine as _;
    let bad = |k: &str, r: String| (format!("tls.acme.eab.{k}"), r);
    if e.kid.trim().is_empty() {
        return Err(bad("kid", "the key id the CA issued is needed".into()));
    }
    let (key, text) = match (&e.hmac_key_file, &e.hmac_key_env) {
        (Some(file), None) => {
            let path = source.resolve(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|err| bad("hmac_key_file", format!("{}: {err}", path.display())))?;
            ("hmac_key_file", text)
        }
        (None, Some(var)) => {
            let text =
                std::env::var(var).map_err(|_| bad("hmac_key_env", format!("{var} is not set")))?;
            ("hmac_key_env", text)
        }
        _ => {
            return Err(bad(
                "hmac_key_file",
                "give one of hmac_key_file or hmac_key_env".into(),
            ))
        }
    };
    let hmac_key = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|err| bad(key, format!("not a base64url key: {err}")))?;
    if hmac_key.is_empty() {
        return Err(bad(key, "the key is empty".into()));
    }
    Ok(Eab {
        kid: e.kid.trim().to_owned(),
        hmac_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::parse(t, &Source::new("proxy.yaml", "/etc/berth"))
    }

    #[test]
    fn documented_shape() {
        let c = parse("listeners:\n  - listen: 0.0.0.0:5443\n    tls: { cert: certs/r.crt, key: certs/r.key }\n    upstreams: [127.0.0.1:8082]\n").unwrap();
        let l = &c.listeners[0];
        assert_eq!(l.external_port, 5443);
        assert_eq!(
            l.tls.as_ref().unwrap().cert,
            PathBuf::from("/etc/berth/certs/r.crt")
        );
        assert_eq!(c.drain, Duration::from_secs(30));
        let c = parse("drain_timeout: 2m\nhealth_check_interval: 250ms\ntimeouts: { read: 1h }\nlisteners:\n  - { listen: 0.0.0.0:5443, upstreams: [127.0.0.1:8082] }\n").unwrap();
        assert_eq!(c.drain, Duration::from_secs(120));
        assert_eq!(c.health_check_interval, Duration::from_millis(250));
        assert_eq!(c.timeouts.read, Duration::from_secs(3600));
        let e = parse("drain_timeout: soon\nlisteners:\n  - { listen: 0.0.0.0:5443, upstreams: [127.0.0.1:8082] }\n").unwrap_err();
        assert_eq!(e.key, "drain_timeout");
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse("listeners:\n  - listen: 0.0.0.0:5443\n    upstream: [127.0.0.1:8082]\n")
            .unwrap_err();
        assert_eq!(e.key, "listeners[0].upstream");
        let e = parse("listeners:\n  - listen: 0.0.0.0:5443\n    upstreams: [x]\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].upstreams[0]", "{e}");
        assert!(e.reason.contains("\"x\""), "{e}");
        let e = parse("listeners:\n  - listen: 0.0.0.0:5443\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].upstreams");
        let e = parse("listeners:\n  - { listen: 0.0.0.0:5443, upstreams: [127.0.0.1:1] }\n  - { listen: 127.0.0.1:5443, upstreams: [127.0.0.1:1] }\n").unwrap_err();
        assert!(e.reason.contains("already used"), "{e}");
        let e = parse("listeners:\n  - listen: 0.0.0.0:5443\n    tls: { acme: { directory: \"http://ca/dir\", domains: [a.test] } }\n    upstreams: [127.0.0.1:1]\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.directory", "{e}");
        let e = parse("listeners:\n  - listen: 0.0.0.0:5443\n    tls: { acme: { directory: \"https://ca/dir\", domains: [a.test], challenge: dns-01 } }\n    upstreams: [127.0.0.1:1]\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.challenge", "{e}");
        let c = parse("listeners:\n  - listen: 0.0.0.0:5443\n    tls: { acme: { directory: \"https://ca/dir\", domains: [A.test, b.test], contact: [\"mailto:o@x\"] } }\n    upstreams: [127.0.0.1:1]\n").unwrap();
        let a = c.listeners[0].acme.as_ref().unwrap();
        assert_eq!(a.domains, ["a.test", "b.test"]);
        assert_eq!(a.challenge, Challenge::TlsAlpn01);
        let e = parse("metrics: { listen: 127.0.0.1:5443 }\nlisteners:\n  - { listen: 0.0.0.0:5443, upstreams: [127.0.0.1:1] }\n").unwrap_err();
        assert_eq!(e.key, "metrics.listen", "{e}");
    }

    #[test]
    fn an_external_account_binding_is_read_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::new("proxy.yaml", dir.path());
        let listener = |eab: &str| {
            format!("listeners:\n  - listen: 0.0.0.0:5443\n    tls: {{ acme: {{ directory: \"https://ca/dir\", domains: [a.test], eab: {eab} }} }}\n    upstreams: [127.0.0.1:1]\n")
        };
        std::fs::write(dir.path().join("eab.key"), "aGVsbG8td29ybGQ\n").unwrap();
        let c =
            ProxyConfig::parse(&listener("{ kid: k1, hmac_key_file: eab.key }"), &source).unwrap();
        let eab = c.listeners[0].acme.as_ref().unwrap().eab.as_ref().unwrap();
        assert_eq!(
            (eab.kid.as_str(), eab.hmac_key.as_slice()),
            ("k1", &b"hello-world"[..])
        );
        assert!(!format!("{eab:?}").contains("hello"));

        let e = ProxyConfig::parse(
            &listener("{ kid: k1, hmac_key_file: missing.key }"),
            &source,
        )
        .unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.eab.hmac_key_file", "{e}");
        assert!(e.to_string().contains("missing.key"), "{e}");
        std::fs::write(dir.path().join("bad.key"), "not base64!").unwrap();
        let e = ProxyConfig::parse(&listener("{ kid: k1, hmac_key_file: bad.key }"), &source)
            .unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.eab.hmac_key_file", "{e}");
        let e = ProxyConfig::parse(
            &listener("{ kid: k1, hmac_key_env: BERTH_TEST_NO_SUCH_VAR }"),
            &source,
        )
        .unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.eab.hmac_key_env", "{e}");
        let e = ProxyConfig::parse(&listener("{ kid: k1 }"), &source).unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.eab.hmac_key_file", "{e}");
        let e = ProxyConfig::parse(&listener("{ kid: \"\", hmac_key_file: eab.key }"), &source)
            .unwrap_err();
        assert_eq!(e.key, "listeners[0].tls.acme.eab.kid", "{e}");
    }
}
