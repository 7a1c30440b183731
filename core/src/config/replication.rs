//! `replication`: rules copying images to and from other V2 registries. Checked here, so a
//! rule naming a repository that does not exist, pulling into one that cannot take pushes, a
//! tag regex that does not compile or an unreadable password file stops the start with the
//! key that is wrong, not the first run.

use std::collections::HashSet;
use std::time::Duration;

use super::raw::RawReplication;
use super::{ConfigError, RepoConfig, RepoSpec, Source};
use crate::replicate::{Direction, RemoteSettings, Rule, TagFilter, Trigger};

/// The shortest schedule taken: more often is a loop, not a schedule.
const MIN_SCHEDULE: Duration = Duration::from_secs(60);

/// Validates every rule; errors name `replication[i].key`.
pub fn rules(
    raw: Vec<RawReplication>,
    repos: &[RepoConfig],
    source: &Source,
) -> Result<Vec<Rule>, ConfigError> {
    let mut names = HashSet::new();
    raw.into_iter()
        .enumerate()
        .map(|(i, r)| {
            let key = |k: &str| format!("replication[{i}].{k}");
            if r.name.is_empty() || !names.insert(r.name.clone()) {
                return Err(source.err(key("name"), "names must be unique and not empty"));
            }
            rule(r, repos, source).map_err(|(k, why)| source.err(key(&k), why))
        })
        .collect()
}

type Fail = (String, String);

fn rule(r: RawReplication, repos: &[RepoConfig], source: &Source) -> Result<Rule, Fail> {
    let repository = repository(r.repository.as_deref(), r.direction, repos)?;
    let url = r.remote.url.trim_end_matches('/').to_owned();
    let parsed: http::Uri = url.parse().map_err(|e| {
        (
            "remote.url".to_owned(),
            format!("{url:?} is not a URL: {e}"),
        )
    })?;
    if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
        return Err((
            "remote.url".into(),
            format!("{url:?} must be an http:// or https:// URL"),
        ));
    }
    if parsed.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err((
            "remote.url".into(),
            "must not carry user:password@ (the URL is logged); use username and password_file"
                .into(),
        ));
    }
    let file = |k: &str, f: Option<String>| -> Result<Option<std::path::PathBuf>, Fail> {
        let Some(f) = f else { return Ok(None) };
        let path = source.resolve(&f);
        crate::auth::Secret::read(&path)
            .map_err(|e| (format!("remote.{k}"), format!("{}: {e}", path.display())))?;
        Ok(Some(path))
    };
    let password_file = file("password_file", r.remote.password_file)?;
    let token_file = file("token_file", r.remote.token_file)?;
    match (&r.remote.username, &password_file, &token_file) {
        (Some(_), None, _) => {
            return Err((
                "remote.password_file".into(),
                "username needs password_file".into(),
            ))
        }
        (None, Some(_), _) => {
            return Err((
                "remote.username".into(),
                "password_file needs username".into(),
            ))
        }
        (_, Some(_), Some(_)) => {
            return Err((
                "remote.token_file".into(),
                "give password_file or token_file, not both".into(),
            ))
        }
        _ => {}
    }
    let ca_file = r.remote.ca_file.map(|f| source.resolve(&f));
    if let Some(path) = &ca_file {
        berth_certs::client_roots(Some(path))
            .map_err(|e| ("remote.ca_file".to_owned(), e.to_string()))?;
    }
    let tags = match (r.tags, r.tags_regex) {
        (Some(_), Some(_)) => {
            return Err((
                "tags_regex".into(),
                "give tags or tags_regex, not both".into(),
            ))
        }
        (_, Some(re)) => TagFilter::Regex(
            regex::Regex::new(&re).map_err(|e| ("tags_regex".to_owned(), e.to_string()))?,
        ),
        (glob, None) => TagFilter::Glob(glob.unwrap_or_else(|| "*".into())),
    };
    if let Some(d) = &r.destination {
        let probe = d.replace("{image}", "x");
        if probe.parse::<crate::oci::ImageName>().is_err() || probe.contains('{') {
            return Err((
                "destination".into(),
                format!("{d:?} does not make an image name ({{image}} is the source's name)"),
            ));
        }
    }
    let schedule: Option<Duration> = r.trigger.schedule.map(Into::into);
    if schedule.is_some_and(|s| s < MIN_SCHEDULE) {
        return Err(("trigger.schedule".into(), "at least 1m".into()));
    }
    if r.trigger.on_push && r.direction == Direction::Pull {
        return Err((
            "trigger.on_push".into(),
            "a pull rule cannot follow pushes to the remote; use schedule".into(),
        ));
    }
    Ok(Rule {
        name: r.name,
        direction: r.direction,
        repository,
        remote: RemoteSettings {
            url,
            username: r.remote.username,
            password_file,
            token_file,
            ca_file,
            timeout: r.remote.timeout.map_or(Duration::from_secs(30), Into::into),
        },
        images: r.images.unwrap_or_else(|| "*".into()),
        tags,
        destination: r.destination,
        trigger: Trigger {
            on_push: r.trigger.on_push,
            schedule,
        },
        delete: r.delete,
    })
}

/// The rule's Berth repository: named (a pull rule writes, so a hosted one), or the only
/// hosted repository there is.
fn repository(
    named: Option<&str>,
    direction: Direction,
    repos: &[RepoConfig],
) -> Result<crate::oci::RepoName, Fail> {
    let hosted = |r: &&RepoConfig| matches!(r.spec, RepoSpec::Hosted { .. });
    let Some(name) = named else {
        let mut all = repos.iter().filter(hosted);
        return match (all.next(), all.next()) {
            (Some(only), None) => Ok(only.name.clone()),
            _ => Err((
                "repository".into(),
                "name the repository: it may be left out only where exactly one hosted \
                 repository exists"
                    .into(),
            )),
        };
    };
    let found = repos
        .iter()
        .find(|r| r.name.as_str() == name)
        .ok_or_else(|| {
            (
                "repository".to_owned(),
                format!("no repository named {name}"),
            )
        })?;
    if direction == Direction::Pull && !hosted(&found) {
        return Err((
            "repository".into(),
            format!(
                "a pull rule writes into a hosted repository; {name} is {}",
                found.spec.kind()
            ),
        ));
    }
    Ok(found.name.clone())
}
