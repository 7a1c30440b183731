//! The `repositories` list: names, connectors (with port clashes named on both sides) and each
//! kind's own settings.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::raw::{RawConnector, RawRepository, RepoKindRaw};
use super::Source;
use super::{kinds, ConfigError, ConnectorConfig, HttpsConfig, MainConfig, RepoConfig, RepoSpec};
use crate::oci::RepoName;

/// Who holds which port so far; port 0 means "any free port" and never collides.
struct Ports(HashMap<SocketAddr, String>);

impl Ports {
    fn claim(&mut self, addr: SocketAddr, owner: &str, by: &RepoName) -> Result<(), String> {
        let clash = self.0.iter().find(|(a, _)| {
            a.port() == addr.port()
                && (a.ip() == addr.ip() || a.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some((a, holder)) = clash {
            return Err(format!(
                "repository {by} wants port {} ({addr}), which {holder} {PORT_CLASH} ({a})",
                addr.port()
            ));
        }
        if addr.port() != 0 {
            self.0.insert(addr, owner.to_owned());
        }
        Ok(())
    }
}

/// A repository entry that does not validate: its index in the list, the key, the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub index: usize,
    pub key: String,
    pub reason: String,
    /// The entry is fine on its own but clashes with another (a port another entry holds).
    pub conflict: bool,
}

impl EntryError {
    fn new(index: usize, key: impl Into<String>, reason: impl Into<String>) -> Self {
        EntryError {
            index,
            key: key.into(),
            reason: reason.into(),
            conflict: false,
        }
    }
}

pub(super) fn repositories(
    raw: Vec<RawRepository>,
    main: &MainConfig,
    source: &Source,
) -> Result<Vec<RepoConfig>, ConfigError> {
    build(raw, main, source)
        .map_err(|e| source.err(format!("repositories[{}].{}", e.index, e.key), e.reason))
}

/// Port clashes are the one error of an entry that is fine on its own.
const PORT_CLASH: &str = "already uses";

/// Validates a whole list of repository entries given as JSON in the config file's shape —
/// the config file's entries merged with those changed at run time — with every check
/// `Config::parse` makes, including those across entries (ports, group members, cycles).
pub fn validate(
    values: &[serde_json::Value],
    main: &MainConfig,
    source: &Source,
) -> Result<Vec<RepoConfig>, EntryError> {
    let raw = values
        .iter()
        .enumerate()
        .map(|(i, v)| parse_entry(v).map_err(|(key, reason)| EntryError::new(i, key, reason)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut repos = build(raw, main, source)?;
    for (r, v) in repos.iter_mut().zip(values) {
        r.entry = v.clone();
    }
    kinds::check_groups(&repos).map_err(|(i, k, reason)| EntryError::new(i, k, reason))?;
    Ok(repos)
}

/// One entry from JSON; an error names the key serde was at.
fn parse_entry(v: &serde_json::Value) -> Result<RawRepository, (String, String)> {
    serde_path_to_error::deserialize(v.clone()).map_err(|e| {
        let path = e.path().to_string();
        let key = if path == "." {
            "(entry)".to_owned()
        } else {
            path
        };
        (key, e.into_inner().to_string())
    })
}

fn build(
    raw: Vec<RawRepository>,
    main: &MainConfig,
    source: &Source,
) -> Result<Vec<RepoConfig>, EntryError> {
    let mut names = HashMap::new();
    let mut ports = Ports(HashMap::new());
    if main.listen.port() != 0 {
        ports.0.insert(main.listen, "the main port".to_owned());
    }
    let mut out = Vec::new();
    for (i, r) in raw.into_iter().enumerate() {
        let fail = |(key, reason): (String, String)| EntryError::new(i, key, reason);
        let name: RepoName = r
            .name
            .parse()
            .map_err(|e| EntryError::new(i, "name", format!("{e}")))?;
        if let Some(first) = names.insert(name.clone(), i) {
            return Err(EntryError::new(
                i,
                "name",
                format!("repository name {name} is already used by repositories[{first}]"),
            ));
        }
        let connector = r
            .connector
            .as_ref()
            .map(|c| connector(c, &name, &mut ports, source))
            .transpose()
            .map_err(|(key, reason)| EntryError {
                conflict: reason.contains(PORT_CLASH),
                ..EntryError::new(i, key, reason)
            })?;
        let (v1_enabled, anonymous_pull) = (r.v1_enabled, r.anonymous_pull);
        let lifecycle = super::policy::repo_lifecycle(&r).map_err(fail)?;
        let spec = spec(r, &name, source).map_err(fail)?;
        out.push(RepoConfig {
            name,
            connector,
            v1_enabled,
            anonymous_pull,
            spec,
            lifecycle,
            entry: serde_json::Value::Null,
        });
    }
    Ok(out)
}

fn connector(
    c: &RawConnector,
    name: &RepoName,
    ports: &mut Ports,
    source: &Source,
) -> Result<ConnectorConfig, (String, String)> {
    if c.http.is_none() && c.https.is_none() {
        return Err(("connector".into(), "needs http, https or both".into()));
    }
    let owner = format!("repository {name}");
    if let Some(http) = c.http {
        ports
            .claim(http, &owner, name)
            .map_err(|r| ("connector.http".to_owned(), r))?;
    }
    if let Some(h) = &c.https {
        ports
            .claim(h.listen, &owner, name)
            .map_err(|r| ("connector.https.listen".to_owned(), r))?;
    }
    let external_url = c
        .external_url
        .as_ref()
        .map(|u| {
            let u = u.trim_end_matches('/');
            let lower = u.to_ascii_lowercase();
            let rest = lower
                .strip_prefix("https://")
                .or_else(|| lower.strip_prefix("http://"));
            match rest {
                Some(host) if !host.is_empty() && !host.contains('/') => Ok(u.to_owned()),
                _ => Err((
                    "connector.external_url".to_owned(),
                    format!("{u:?} must be like https://registry.example.com:5443"),
                )),
            }
        })
        .transpose()?;
    Ok(ConnectorConfig {
        external_url,
        http: c.http,
        https: c.https.as_ref().map(|h| HttpsConfig {
            listen: h.listen,
            files: berth_certs::CertFiles {
                cert: source.resolve(&h.cert),
                key: source.resolve(&h.key),
            },
        }),
    })
}

/// The kind's own settings; keys of another kind are errors, not silently ignored.
fn spec(r: RawRepository, name: &RepoName, source: &Source) -> Result<RepoSpec, (String, String)> {
    let kind = r.kind;
    let foreign = |k: &str, whose: &str| {
        Err((
            k.to_owned(),
            format!("only {whose} have {k} ({name} is {kind})"),
        ))
    };
    if kind != RepoKindRaw::Proxy && r.remote.is_some() {
        return foreign("remote", "proxy repositories");
    }
    if kind != RepoKindRaw::Group && r.members.is_some() {
        return foreign("members", "groups");
    }
    if kind != RepoKindRaw::Group && r.mirrors.is_some() {
        return foreign("mirrors", "groups");
    }
    match kind {
        RepoKindRaw::Hosted => Ok(RepoSpec::Hosted {
            write_policy: r.write_policy,
        }),
        RepoKindRaw::Proxy => kinds::proxy_settings(r, source).map(RepoSpec::Proxy),
        RepoKindRaw::Group => kinds::group_settings(r).map(RepoSpec::Group),
    }
}
