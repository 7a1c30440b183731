//! The edge's configuration: YAML in, typed config out. Every error names the file, the key
//! and the reason; cross-key checks (duplicate ports, listeners with nowhere to send traffic)
//! happen here so that start-up never half-succeeds.

mod raw;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `<file>: <key>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

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

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
}

impl ProxyConfig {
    pub fn load(path: &Path) -> Result<ProxyConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            reason: e.to_string(),
        })?;
        ProxyConfig::parse(&text, &file, path.parent().unwrap_or(Path::new(".")))
    }

    pub fn parse(text: &str, file: &str, base: &Path) -> Result<ProxyConfig, ConfigError> {
        let err = |key: String, reason: String| ConfigError {
            file: file.to_owned(),
            key,
            reason,
        };
        let raw = raw::parse(text).map_err(|(k, r)| err(k, r))?;
        if raw.listeners.is_empty() {
            return Err(err(
                "listeners".into(),
                "at least one listener is needed".into(),
            ));
        }
        let mut ports: HashMap<u16, String> = HashMap::new();
        let mut listeners = Vec::new();
        for (i, l) in raw.listeners.into_iter().enumerate() {
            let key = |k: &str| format!("listeners[{i}].{k}");
            let name = l.name.unwrap_or_else(|| l.listen.to_string());
            if l.listen.port() == 0 {
                return Err(err(
                    key("listen"),
                    "a fixed port is needed (0 is not allowed)".into(),
                ));
            }
            if let Some(other) = ports.insert(l.listen.port(), name.clone()) {
                return Err(err(
                    key("listen"),
                    format!(
                        "port {} is already used by listener {other}",
                        l.listen.port()
                    ),
                ));
            }
            if l.upstreams.is_empty() && l.hosts.is_empty() {
                return Err(err(
                    key("upstreams"),
                    "no upstreams and no hosts: nowhere to send requests".into(),
                ));
            }
            let upstreams = upstream_addrs(&l.upstreams)
                .map_err(|(j, r)| err(key(&format!("upstreams[{j}]")), r))?;
            let mut hosts = Vec::new();
            for (j, h) in l.hosts.iter().enumerate() {
                if h.upstreams.is_empty() || h.names.is_empty() {
                    return Err(err(
                        key(&format!("hosts[{j}]")),
                        "needs names and upstreams".into(),
                    ));
                }
                let addrs = upstream_addrs(&h.upstreams)
                    .map_err(|(k, r)| err(key(&format!("hosts[{j}].upstreams[{k}]")), r))?;
                hosts.push(HostRoute {
                    names: h.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                    upstreams: addrs,
                });
            }
            let files = |c: &raw::RawCert| CertFiles {
                cert: resolve(base, &c.cert),
                key: resolve(base, &c.key),
            };
            listeners.push(ListenerConfig {
                external_port: l.external_port.unwrap_or(l.listen.port()),
                listen: l.listen,
                tls: l.tls.as_ref().map(files),
                sni: l
                    .sni
                    .iter()
                    .map(|s| SniCert {
                        names: s.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
                        files: CertFiles {
                            cert: resolve(base, &s.cert),
                            key: resolve(base, &s.key),
                        },
                    })
                    .collect(),
                upstreams,
                hosts,
                name,
            });
        }
        let t = raw.timeouts;
        Ok(ProxyConfig {
            state_dir: resolve(base, raw.state_dir.as_deref().unwrap_or("./state")),
            threads: raw.threads.unwrap_or(2).max(1),
            drain: Duration::from_secs(raw.drain_seconds.unwrap_or(30)),
            timeouts: Timeouts {
                connect: Duration::from_secs(t.connect_seconds.unwrap_or(5)),
                read: Duration::from_secs(t.read_seconds.unwrap_or(900)),
                write: Duration::from_secs(t.write_seconds.unwrap_or(900)),
                idle: Duration::from_secs(t.idle_seconds.unwrap_or(60)),
            },
            health_check_interval: Duration::from_millis(
                raw.health_check_interval_ms.unwrap_or(1000).max(100),
            ),
            dev_cert_names: raw.dev_cert_names,
            listeners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<ProxyConfig, ConfigError> {
        ProxyConfig::parse(t, "proxy.yaml", Path::new("/etc/berth"))
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
    }
}
