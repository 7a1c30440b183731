//! Configuration: YAML in, typed config out, in two stages.
//!
//! [`raw`] mirrors the file (serde, `deny_unknown_fields`, the only caller of `serde_yaml`);
//! [`Config::load`] turns it into types that cannot hold a bad value (`RepoName`, `SocketAddr`,
//! a normalised context path) and checks what spans several keys: unique repository names and
//! no two listeners on one port. Every error names the file, the key and the reason.

mod raw;

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::oci::RepoName;
use crate::repo::WritePolicy;

pub use raw::RepoKindRaw;

/// A configuration error: `<file>: <key>: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

/// The validated configuration of a core.
#[derive(Debug, Clone)]
pub struct Config {
    /// Root directory of the filesystem storage (relative paths are taken from the config
    /// file's directory).
    pub storage_root: PathBuf,
    pub main: MainConfig,
    /// Peers whose `X-Forwarded-*` headers are believed (the edge's addresses).
    pub trusted_proxies: Vec<IpAddr>,
    pub repositories: Vec<RepoConfig>,
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
    pub kind: RepoKindRaw,
    pub connector: Option<ConnectorConfig>,
    pub v1_enabled: bool,
    pub write_policy: WritePolicy,
}

/// A repository's own ports: plain HTTP (behind the edge) and/or direct HTTPS.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub http: Option<SocketAddr>,
    pub https: Option<HttpsConfig>,
}

/// A direct HTTPS connector.
#[derive(Debug, Clone)]
pub struct HttpsConfig {
    pub listen: SocketAddr,
    pub files: berth_certs::CertFiles,
}

impl fmt::Display for RepoKindRaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RepoKindRaw::Hosted => "hosted",
        })
    }
}

fn resolve(base: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        base.join(p)
    }
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
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            reason: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &file, base)
    }

    /// Parses configuration text; `file` is used in errors, `base` resolves relative paths.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let err = |key: &str, reason: String| ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let raw = raw::parse(text).map_err(|(key, reason)| err(&key, reason))?;

        let storage_root = resolve(base, &raw.storage.root);
        let context_path = normalise_context_path(raw.main.context_path.as_deref().unwrap_or(""))
            .map_err(|r| err("main.context_path", r))?;
        let main = MainConfig {
            listen: raw.main.listen,
            context_path,
        };

        let mut names = HashMap::new();
        // Port 0 means "any free port" and never collides.
        let mut ports: HashMap<SocketAddr, String> = HashMap::new();
        if main.listen.port() != 0 {
            ports.insert(main.listen, "the main port".to_owned());
        }
        let mut repositories = Vec::new();
        for (i, r) in raw.repositories.into_iter().enumerate() {
            let key = |k: &str| format!("repositories[{i}].{k}");
            let name: RepoName = r
                .name
                .parse()
                .map_err(|e| err(&key("name"), format!("{e}")))?;
            if let Some(first) = names.insert(name.clone(), i) {
                return Err(err(
                    &key("name"),
                    format!("repository name {name} is already used by repositories[{first}]"),
                ));
            }
            let connector = match r.connector {
                None => None,
                Some(c) => {
                    if c.http.is_none() && c.https.is_none() {
                        return Err(err(&key("connector"), "needs http, https or both".into()));
                    }
                    let https = c.https.map(|h| HttpsConfig {
                        listen: h.listen,
                        files: berth_certs::CertFiles {
                            cert: resolve(base, &h.cert),
                            key: resolve(base, &h.key),
                        },
                    });
                    Some(ConnectorConfig {
                        http: c.http,
                        https,
                    })
                }
            };
            if let Some(c) = &connector {
                let wanted = [
                    ("connector.http", c.http),
                    ("connector.https.listen", c.https.as_ref().map(|h| h.listen)),
                ];
                for (k, addr) in wanted {
                    let Some(addr) = addr else { continue };
                    let clash = ports.iter().find(|(a, _)| {
                        a.port() == addr.port()
                            && (a.ip() == addr.ip()
                                || a.ip().is_unspecified()
                                || addr.ip().is_unspecified())
                    });
                    if let Some((a, owner)) = clash {
                        return Err(err(
                            &key(k),
                            format!(
                                "repository {name} wants port {} ({addr}), which {owner} already uses ({a})",
                                addr.port()
                            ),
                        ));
                    }
                    if addr.port() != 0 {
                        ports.insert(addr, format!("repository {name}"));
                    }
                }
            }
            repositories.push(RepoConfig {
                name,
                kind: r.kind,
                connector,
                v1_enabled: r.v1_enabled,
                write_policy: r.write_policy,
            });
        }
        Ok(Config {
            storage_root,
            main,
            trusted_proxies: raw.trusted_proxies,
            repositories,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "core.yaml", Path::new("/etc/berth"))
    }

    const GOOD: &str = "
storage:
  root: ./data
main:
  listen: 127.0.0.1:8081
  context_path: /berth/
repositories:
  - name: docker-hosted
    kind: hosted
    connector:
      http: 127.0.0.1:8082
    write_policy: deny_redeploy
";

    #[test]
    fn parses_the_documented_shape() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.storage_root, PathBuf::from("/etc/berth/./data"));
        assert_eq!(c.main.context_path, "/berth");
        assert_eq!(c.repositories[0].write_policy, WritePolicy::DenyRedeploy);
        assert!(!c.repositories[0].v1_enabled);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse(&GOOD.replace("write_policy", "write_polcy")).unwrap_err();
        assert_eq!(e.file, "core.yaml");
        assert_eq!(e.key, "repositories[0].write_polcy");
        assert!(e.reason.contains("write_polcy"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse(&GOOD.replace("127.0.0.1:8082", "nonsense")).unwrap_err();
        assert_eq!(e.key, "repositories[0].connector.http");
        let e = parse(&GOOD.replace("deny_redeploy", "sometimes")).unwrap_err();
        assert_eq!(e.key, "repositories[0].write_policy");
        let e = parse(&GOOD.replace("docker-hosted", "Docker/Hosted")).unwrap_err();
        assert_eq!(e.key, "repositories[0].name");
        let e = parse(&GOOD.replace("/berth/", "berth")).unwrap_err();
        assert_eq!(e.key, "main.context_path");
    }

    #[test]
    fn port_clashes_name_both_sides() {
        let text = format!(
            "{GOOD}  - name: second\n    kind: hosted\n    connector: {{ http: 127.0.0.1:8082 }}\n"
        );
        let e = parse(&text).unwrap_err();
        assert_eq!(e.key, "repositories[1].connector.http");
        assert!(
            e.reason.contains("second") && e.reason.contains("docker-hosted"),
            "{e}"
        );
        let e = parse(&GOOD.replace("8082", "8081")).unwrap_err();
        assert!(e.reason.contains("main port"), "{e}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = format!("{GOOD}  - name: docker-hosted\n    kind: hosted\n");
        let e = parse(&text).unwrap_err();
        assert!(e.reason.contains("already used"), "{e}");
    }
}
