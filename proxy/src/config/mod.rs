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

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub external_port: u16,
    /// `None` means "use the development certificate".
    pub tls: Option<CertFiles>,
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

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub state_dir: PathBuf,
    pub threads: usize,
    pub drain: Duration,
    pub timeouts: Timeouts,
    pub health_check_interval: Duration,
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
    Ok(ListenerConfig {
        external_port: l.external_port.unwrap_or(l.listen.port()),
        listen: l.listen,
        tls: l.tls.as_ref().map(|c| files(&c.cert, &c.key)),
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
        let e = parse("metrics: { listen: 127.0.0.1:5443 }\nlisteners:\n  - { listen: 0.0.0.0:5443, upstreams: [127.0.0.1:1] }\n").unwrap_err();
        assert_eq!(e.key, "metrics.listen", "{e}");
    }
}
