//! Per-repository life-cycle keys: `cleanup` policies, `immutable_tags`, `quota`, `cache`.

use regex::Regex;

use super::raw::{RawPolicy, RawRepository, RepoKindRaw};
use crate::lifecycle::policy::{CacheEviction, Policy, RepoLifecycle};

type KeyError = (String, String);

fn regex(key: String, pattern: &str) -> Result<Regex, KeyError> {
    Regex::new(pattern).map_err(|e| (key, format!("{pattern:?} is not a regex: {e}")))
}

fn policy(i: usize, p: &RawPolicy) -> Result<Policy, KeyError> {
    let key = |k: &str| format!("cleanup[{i}].{k}");
    let opt = |k: &str, v: &Option<String>| v.as_deref().map(|p| regex(key(k), p)).transpose();
    if p.name.trim().is_empty() {
        return Err((key("name"), "a policy needs a name".into()));
    }
    let criteria =
        p.keep_last.is_some() || p.older_than.is_some() || p.not_pulled_for.is_some() || p.untagged;
    if !criteria {
        return Err((
            key("name"),
            format!(
                "policy {:?} has no criterion (keep_last, older_than, not_pulled_for, untagged): it would remove every tag",
                p.name
            ),
        ));
    }
    Ok(Policy {
        name: p.name.clone(),
        images: opt("images", &p.images)?,
        tags: opt("tags", &p.tags)?,
        exclude_tags: opt("exclude_tags", &p.exclude_tags)?,
        keep_last: p.keep_last,
        older_than: p.older_than.map(|d| d.get()),
        not_pulled_for: p.not_pulled_for.map(|d| d.get()),
        untagged: p.untagged,
    })
}

pub(super) fn repo_lifecycle(r: &RawRepository) -> Result<RepoLifecycle, KeyError> {
    if r.kind != RepoKindRaw::Hosted {
        if !r.immutable_tags.is_empty() {
            return Err((
                "immutable_tags".into(),
                "only hosted repositories take pushes".into(),
            ));
        }
        if r.quota.is_some() {
            return Err((
                "quota".into(),
                "only hosted repositories take pushes; for a proxy use cache.max_size".into(),
            ));
        }
    }
    if r.kind == RepoKindRaw::Group && !r.cleanup.is_empty() {
        return Err((
            "cleanup".into(),
            "a group holds nothing itself; set policies on its members".into(),
        ));
    }
    if r.kind != RepoKindRaw::Proxy && r.cache.is_some() {
        return Err((
            "cache".into(),
            "only proxy repositories have a cache".into(),
        ));
    }
    Ok(RepoLifecycle {
        cleanup: r
            .cleanup
            .iter()
            .enumerate()
            .map(|(i, p)| policy(i, p))
            .collect::<Result<_, _>>()?,
        immutable_tags: r
            .immutable_tags
            .iter()
            .enumerate()
            .map(|(i, p)| regex(format!("immutable_tags[{i}]"), p))
            .collect::<Result<_, _>>()?,
        quota: r.quota.map(|q| q.0),
        cache: r.cache.as_ref().map(|c| CacheEviction {
            max_age: c.max_age.map(|d| d.get()),
            max_size: c.max_size.map(|s| s.0),
        }),
    })
}
