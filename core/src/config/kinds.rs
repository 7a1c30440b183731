//! Cross-key checks and settings for proxy and group repositories.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::raw::{self, RepoKindRaw};
use super::{parse_duration, resolve, ProxySettings, RepoConfig};
use crate::oci::RepoName;

#[allow(clippy::too_many_arguments)]
pub(super) fn proxy_settings(
    remote: raw::RawRemote,
    content_max_age: &Option<String>,
    metadata_max_age: &Option<String>,
    negative: &Option<String>,
    auto_block_after: Option<u32>,
    auto_block_for: &Option<String>,
    base: &Path,
) -> Result<ProxySettings, (String, String)> {
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
            let path = resolve(base, f);
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
    let dur = |k: &str, v: &Option<String>, default: u64| -> Result<Duration, (String, String)> {
        match v {
            Some(v) => parse_duration(v).map_err(|e| (k.to_owned(), e)),
            None => Ok(Duration::from_secs(default)),
        }
    };
    Ok(ProxySettings {
        url,
        username: remote.username,
        password,
        ca_file: remote.ca_file.map(|f| resolve(base, &f)),
        content_max_age: dur("content_max_age", content_max_age, 24 * 3600)?,
        metadata_max_age: dur("metadata_max_age", metadata_max_age, 30 * 60)?,
        negative_cache_ttl: dur("negative_cache_ttl", negative, 60)?,
        auto_block_after: auto_block_after.unwrap_or(5).max(1),
        auto_block_for: dur("auto_block_for", auto_block_for, 60)?,
    })
}

/// Group members must exist, and groups must not contain themselves (directly or through
/// other groups); the writable member must be hosted.
pub(super) fn check_groups(repos: &[RepoConfig]) -> Result<(), (usize, &'static str, String)> {
    let index: HashMap<&RepoName, usize> = repos
        .iter()
        .enumerate()
        .map(|(i, r)| (&r.name, i))
        .collect();
    for (i, r) in repos.iter().enumerate() {
        let Some(g) = &r.group else { continue };
        for m in &g.members {
            if !index.contains_key(m) {
                return Err((i, "members", format!("no repository named {m}")));
            }
        }
        if let Some(w) = &g.writable_member {
            if repos[index[w]].kind != RepoKindRaw::Hosted {
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
            if let Some(mg) = &repos[index[m]].group {
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
