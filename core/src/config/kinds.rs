//! Settings of proxy and group repositories, and the checks that span repositories.

use std::collections::HashMap;

use super::raw::RawRepository;
use super::{RepoConfig, RepoSpec, Source};
use crate::oci::RepoName;
use crate::repo::{GroupSettings, ProxySettings, RemoteTimeouts};

pub(super) fn proxy_settings(
    r: RawRepository,
    source: &Source,
) -> Result<ProxySettings, (String, String)> {
    let Some(remote) = r.remote else {
        return Err((
            "remote".into(),
            "a proxy repository needs remote.url".into(),
        ));
    };
    let url = remote.url.trim_end_matches('/').to_owned();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) || url.len() < 10 {
        return Err((
            "remote.url".into(),
            format!("{url:?} must be an http:// or https:// URL"),
        ));
    }
    let password = match &remote.password_file {
        Some(f) => {
            let path = source.resolve(f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                (
                    "remote.password_file".to_owned(),
                    format!("{}: {e}", path.display()),
                )
            })?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        None => None,
    };
    let d = ProxySettings::new(url);
    let t = RemoteTimeouts::default();
    Ok(ProxySettings {
        username: remote.username,
        password,
        ca_file: remote.ca_file.map(|f| source.resolve(&f)),
        content_max_age: r.content_max_age.map_or(d.content_max_age, Into::into),
        metadata_max_age: r.metadata_max_age.map_or(d.metadata_max_age, Into::into),
        negative_cache_ttl: r
            .negative_cache_ttl
            .map_or(d.negative_cache_ttl, Into::into),
        auto_block_after: r.auto_block_after.unwrap_or(d.auto_block_after).max(1),
        auto_block_for: r.auto_block_for.map_or(d.auto_block_for, Into::into),
        timeouts: RemoteTimeouts {
            connect: remote.connect_timeout.map_or(t.connect, Into::into),
            response: remote.response_timeout.map_or(t.response, Into::into),
            idle: remote.idle_timeout.map_or(t.idle, Into::into),
        },
        max_concurrent_fetches: r
            .max_concurrent_fetches
            .unwrap_or(d.max_concurrent_fetches)
            .max(1),
        ..d
    })
}

pub(super) fn group_settings(r: RawRepository) -> Result<GroupSettings, (String, String)> {
    let Some(members) = r.members else {
        return Err(("members".into(), "a group needs members".into()));
    };
    let members = members
        .iter()
        .enumerate()
        .map(|(j, m)| {
            m.parse::<RepoName>()
                .map_err(|e| (format!("members[{j}]"), e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let writable_member = r
        .writable_member
        .map(|w| {
            w.parse::<RepoName>()
                .map_err(|e| ("writable_member".to_owned(), e.to_string()))
        })
        .transpose()?;
    if let Some(w) = &writable_member {
        if !members.contains(w) {
            return Err((
                "writable_member".into(),
                format!("{w} is not one of the members"),
            ));
        }
    }
    let mirrors = r
        .mirrors
        .unwrap_or_default()
        .into_iter()
        .map(|(ns, repo)| {
            let key = format!("mirrors.{ns}");
            if !valid_upstream(&ns) {
                return Err((key, format!("{ns:?} is not a registry host like docker.io")));
            }
            let repo = repo.parse::<RepoName>().map_err(|e| (key, e.to_string()))?;
            Ok((ns.to_ascii_lowercase(), repo))
        })
        .collect::<Result<_, _>>()?;
    Ok(GroupSettings {
        members,
        writable_member,
        mirrors,
    })
}

/// A registry host as containerd sends it in `ns`: `docker.io`, `registry.k8s.io:443`.
fn valid_upstream(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 253
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// Group members must exist, and groups must not contain themselves (directly or through
/// other groups); the writable member must be hosted.
pub(super) fn check_groups(repos: &[RepoConfig]) -> Result<(), (usize, &'static str, String)> {
    let index: HashMap<&RepoName, usize> = repos
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.name, i))
        .collect();
    let group = |i: usize| match &repos[i].spec {
        RepoSpec::Group(g) => Some(g),
        _ => None,
    };
    for (i, r) in repos.iter().enumerate() {
        let Some(g) = group(i) else { continue };
        for m in &g.members {
            if !index.contains_key(m) {
                return Err((i, "members", format!("no repository named {m}")));
            }
        }
        for (ns, m) in &g.mirrors {
            let Some(&at) = index.get(m).filter(|_| m != &r.name) else {
                return Err((i, "mirrors", format!("{ns}: no other repository named {m}")));
            };
            // A mirror serves pulls of another registry's images: only a pull-through cache
            // does that (a hosted or group target would hand nodes whatever was pushed there).
            if !matches!(repos[at].spec, RepoSpec::Proxy(_)) {
                return Err((
                    i,
                    "mirrors",
                    format!(
                        "{ns}: {m} is a {} repository; mirrors must be proxy repositories",
                        repos[at].spec.kind()
                    ),
                ));
            }
        }
        if let Some(w) = &g.writable_member {
            if !matches!(repos[index[w]].spec, RepoSpec::Hosted { .. }) {
                return Err((
                    i,
                    "writable_member",
                    format!("{w} is not a hosted repository"),
                ));
            }
        }
        // Depth-first search for a path back to this group.
        let mut stack: Vec<(&RepoName, Vec<&RepoName>)> =
            g.members.iter().map(|m| (m, vec![&r.name, m])).collect();
        while let Some((m, path)) = stack.pop() {
            if m == &r.name {
                let cycle: Vec<String> = path.iter().map(|n| n.to_string()).collect();
                return Err((
                    i,
                    "members",
                    format!("groups form a cycle: {}", cycle.join(" -> ")),
                ));
            }
            if path.len() > repos.len() + 1 {
                continue;
            }
            if let Some(mg) = index.get(m).and_then(|j| group(*j)) {
                for next in &mg.members {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    Ok(())
}
