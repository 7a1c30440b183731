//! Configuration: YAML in, typed config out, in two stages.
//!
//! [`raw`] mirrors the file (serde, `deny_unknown_fields`, the only caller of `serde_yaml`);
//! [`Config::load`] turns it into types that cannot hold a bad value (`RepoName`, `SocketAddr`,
//! a normalised context path) and checks what spans several keys: unique repository names and
//! no two listeners on one port. Every error names the file, the key and the reason.

mod auth;
mod cidr;
mod kinds;
mod raw;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::oci::RepoName;
use crate::repo::WritePolicy;
use auth::auth_config;
use kinds::{check_groups, proxy_settings};

pub use cidr::Cidr;
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
    pub trusted_proxies: Vec<Cidr>,
    pub repositories: Vec<RepoConfig>,
    pub limits: Limits,
    /// `None`: open access (development).
    pub auth: Option<AuthConfig>,
}

/// Users, roles and token settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub users: Vec<UserConfig>,
    pub roles: Vec<RoleConfig>,
    pub token_ttl: Duration,
    pub limiter: crate::auth::LimiterConfig,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    pub password_hash: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub name: String,
    pub privileges: Vec<crate::auth::Privilege>,
}

/// Protections against slow, abandoned or abusive clients.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// The cap on open upload sessions per repository and per client.
    pub uploads: crate::repo::upload_cap::UploadLimits,
    pub upload_expiry: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(300),
            uploads: crate::repo::upload_cap::UploadLimits {
                max_sessions: 1000,
                per_client: 100,
                idle_after: Duration::from_secs(120),
            },
            upload_expiry: Duration::from_secs(24 * 3600),
        }
    }
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
    /// Set for `kind: proxy`.
    pub proxy: Option<ProxySettings>,
    /// Set for `kind: group`.
    pub group: Option<GroupSettings>,
    /// With `auth`: unauthenticated clients may pull.
    pub anonymous_pull: bool,
}

/// A proxy repository's remote and cache settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Base URL without a trailing slash.
    pub url: String,
    pub username: Option<String>,
    /// Read from `password_file` at load time.
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub content_max_age: Duration,
    pub metadata_max_age: Duration,
    pub negative_cache_ttl: Duration,
    pub auto_block_after: u32,
    pub auto_block_for: Duration,
}

/// A group's members, in lookup order.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub members: Vec<RepoName>,
    pub writable_member: Option<RepoName>,
}

/// Parses `90s`, `30m`, `24h`, `7d` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{s:?}: unknown unit (use s, m, h or d)")),
    };
    Ok(Duration::from_secs(n.saturating_mul(mult)))
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
            RepoKindRaw::Proxy => "proxy",
            RepoKindRaw::Group => "group",
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
            let proxy = match (r.kind, r.remote) {
                (RepoKindRaw::Proxy, Some(remote)) => Some(
                    proxy_settings(
                        remote,
                        &r.content_max_age,
                        &r.metadata_max_age,
                        &r.negative_cache_ttl,
                        r.auto_block_after,
                        &r.auto_block_for,
                        base,
                    )
                    .map_err(|(k, reason)| err(&key(&k), reason))?,
                ),
                (RepoKindRaw::Proxy, None) => {
                    return Err(err(
                        &key("remote"),
                        "a proxy repository needs remote.url".into(),
                    ))
                }
                (_, Some(_)) => {
                    return Err(err(
                        &key("remote"),
                        format!(
                            "only proxy repositories have a remote ({name} is {})",
                            r.kind
                        ),
                    ))
                }
                (_, None) => None,
            };
            let group = match (r.kind, r.members) {
                (RepoKindRaw::Group, Some(members)) => {
                    let members = members
                        .iter()
                        .enumerate()
                        .map(|(j, m)| {
                            m.parse::<RepoName>()
                                .map_err(|e| err(&key(&format!("members[{j}]")), e.to_string()))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let writable_member = r
                        .writable_member
                        .map(|w| {
                            w.parse::<RepoName>()
                                .map_err(|e| err(&key("writable_member"), e.to_string()))
                        })
                        .transpose()?;
                    if let Some(w) = &writable_member {
                        if !members.contains(w) {
                            return Err(err(
                                &key("writable_member"),
                                format!("{w} is not one of the members"),
                            ));
                        }
                    }
                    Some(GroupSettings {
                        members,
                        writable_member,
                    })
                }
                (RepoKindRaw::Group, None) => {
                    return Err(err(&key("members"), "a group needs members".into()))
                }
                (_, Some(_)) => {
                    return Err(err(
                        &key("members"),
                        format!("only groups have members ({name} is {})", r.kind),
                    ))
                }
                (_, None) => None,
            };
            repositories.push(RepoConfig {
                name,
                kind: r.kind,
                connector,
                v1_enabled: r.v1_enabled,
                write_policy: r.write_policy,
                proxy,
                group,
                anonymous_pull: r.anonymous_pull,
            });
        }
        // Absent means an edge on the same host, the documented setup (Tomcat's RemoteIpValve
        // and most frameworks trust loopback by default too); an explicit `[]` trusts nobody.
        let trusted_proxies = raw
            .trusted_proxies
            .unwrap_or_else(|| vec!["127.0.0.0/8".into(), "::1".into()])
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.parse::<Cidr>()
                    .map_err(|r| err(&format!("trusted_proxies[{i}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let d = Limits::default();
        let dur =
            |k: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
                match v {
                    Some(v) => parse_duration(v).map_err(|r| err(&format!("limits.{k}"), r)),
                    None => Ok(default),
                }
            };
        let limits = Limits {
            header_read_timeout: dur(
                "header_read_timeout",
                &raw.limits.header_read_timeout,
                d.header_read_timeout,
            )?,
            body_idle_timeout: dur(
                "body_idle_timeout",
                &raw.limits.body_idle_timeout,
                d.body_idle_timeout,
            )?,
            uploads: {
                let max = raw.limits.max_upload_sessions;
                let max_sessions = max.unwrap_or(d.uploads.max_sessions).max(1);
                crate::repo::upload_cap::UploadLimits {
                    max_sessions,
                    // Default share: a tenth of the cap, at least one and at most the cap.
                    per_client: raw
                        .limits
                        .max_upload_sessions_per_client
                        .unwrap_or((max_sessions / 10).max(1))
                        .clamp(1, max_sessions),
                    idle_after: dur(
                        "upload_idle_after",
                        &raw.limits.upload_idle_after,
                        d.uploads.idle_after,
                    )?,
                }
            },
            upload_expiry: dur("upload_expiry", &raw.limits.upload_expiry, d.upload_expiry)?,
        };
        let auth = raw
            .auth
            .map(|a| auth_config(a).map_err(|(k, r)| err(&format!("auth.{k}"), r)))
            .transpose()?;
        check_groups(&repositories)
            .map_err(|(i, k, reason)| err(&format!("repositories[{i}].{k}"), reason))?;
        Ok(Config {
            storage_root,
            main,
            trusted_proxies,
            repositories,
            limits,
            auth,
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
    fn proxies_and_groups() {
        let text = format!(
            "{GOOD}  - name: hub\n    kind: proxy\n    remote: {{ url: https://registry-1.docker.io }}\n    metadata_max_age: 30m\n  - name: all\n    kind: group\n    members: [docker-hosted, hub]\n    writable_member: docker-hosted\n"
        );
        let c = parse(&text).unwrap();
        let p = c.repositories[1].proxy.as_ref().unwrap();
        assert_eq!(p.metadata_max_age, std::time::Duration::from_secs(1800));
        assert_eq!(c.repositories[2].group.as_ref().unwrap().members.len(), 2);
        let bad = text.replace("writable_member: docker-hosted", "writable_member: hub");
        assert!(parse(&bad).unwrap_err().reason.contains("not a hosted"));
        let missing = text.replace("[docker-hosted, hub]", "[docker-hosted, nope]");
        assert!(parse(&missing)
            .unwrap_err()
            .reason
            .contains("no repository named nope"));
        let no_remote = format!("{GOOD}  - name: hub\n    kind: proxy\n");
        assert_eq!(parse(&no_remote).unwrap_err().key, "repositories[1].remote");
        let bad_age = text.replace("30m", "30 minutes");
        assert_eq!(
            parse(&bad_age).unwrap_err().key,
            "repositories[1].metadata_max_age"
        );
    }

    #[test]
    fn group_cycles_are_rejected() {
        let text = format!(
            "{GOOD}  - {{ name: a, kind: group, members: [b] }}\n  - {{ name: b, kind: group, members: [docker-hosted, a] }}\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(
            e.reason.contains("cycle") && e.reason.contains("a -> b -> a"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("2h").unwrap().as_secs(), 7200);
        assert_eq!(parse_duration("1d").unwrap().as_secs(), 86400);
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let text = format!("{GOOD}  - name: docker-hosted\n    kind: hosted\n");
        let e = parse(&text).unwrap_err();
        assert!(e.reason.contains("already used"), "{e}");
    }
}
