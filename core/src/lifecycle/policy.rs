//! Cleanup policies (Nexus/Harbor/zot style) and a proxy's cache eviction: which tags and
//! manifests go, decided from the store's ages, previewed exactly before anything is removed.
//!
//! A tag goes when it matches a policy's `images`/`tags`, not its `exclude_tags` nor the
//! repository's `immutable_tags`, is not among the policy's `keep_last` most recently pushed
//! matching tags of its image, and meets every age criterion the policy gives; policies add
//! up (a tag any policy removes goes). A manifest left without tags goes with its last one,
//! into the trash (restorable for the undo window) with its referrers; `untagged` also takes
//! untagged manifests that no live manifest names and that refer to nothing. Bytes are freed
//! by the collector afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::Regex;

use crate::oci::{Digest, ImageName, RepoName};
use crate::storage::metadata::lifecycle::{ManifestAge, TagInfo};
use crate::storage::metadata::{now, Actor, MetadataError, Page};
use crate::storage::{Namespace, Stores};

/// One policy of a repository.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub images: Option<Regex>,
    pub tags: Option<Regex>,
    pub exclude_tags: Option<Regex>,
    pub keep_last: Option<usize>,
    pub older_than: Option<Duration>,
    pub not_pulled_for: Option<Duration>,
    pub untagged: bool,
}

/// A proxy's cache limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEviction {
    /// Evict what nobody pulled for this long.
    pub max_age: Option<Duration>,
    /// Evict the least recently pulled beyond this many bytes.
    pub max_size: Option<u64>,
}

/// A repository's life-cycle settings.
#[derive(Debug, Clone, Default)]
pub struct RepoLifecycle {
    pub cleanup: Vec<Policy>,
    pub immutable_tags: Vec<Regex>,
    pub quota: Option<u64>,
    pub cache: Option<CacheEviction>,
}

impl RepoLifecycle {
    /// The immutable pattern `tag` matches, if any.
    pub fn immutable(&self, tag: &str) -> Option<&Regex> {
        self.immutable_tags.iter().find(|r| r.is_match(tag))
    }
}

/// One removal a run makes (or, dry, would make).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    pub image: String,
    /// `None`: an untagged manifest (or one evicted from a cache).
    pub tag: Option<String>,
    pub digest: String,
    /// The policy (or `cache max_age`, `cache max_size`).
    pub by: String,
}

/// What a run of a repository's policies did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CleanupReport {
    pub repository: String,
    pub dry_run: bool,
    /// Unix seconds.
    pub at: i64,
    pub tags: Vec<Removal>,
    /// Manifests that go (with their last tag, untagged, or evicted).
    pub manifests: Vec<Removal>,
    /// Bytes the collector frees once these are collected (after the undo window).
    pub bytes: u64,
}

impl CleanupReport {
    fn new(repo: &RepoName, dry_run: bool, at: i64) -> Self {
        CleanupReport {
            repository: repo.to_string(),
            dry_run,
            at,
            ..CleanupReport::default()
        }
    }
}

fn older(at: i64, than: Option<Duration>, now: i64) -> bool {
    than.is_none_or(|d| at < now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
}

/// Tags of one image `p` removes.
fn tags_removed<'a>(
    p: &Policy,
    life: &RepoLifecycle,
    tags: &'a [TagInfo],
    now: i64,
) -> Vec<&'a TagInfo> {
    // A policy with no tag criterion (only `untagged`) removes no tags.
    if p.keep_last.is_none() && p.older_than.is_none() && p.not_pulled_for.is_none() {
        return Vec::new();
    }
    let mut matching: Vec<&TagInfo> = tags
        .iter()
        .filter(|t| p.tags.as_ref().is_none_or(|r| r.is_match(&t.tag)))
        .filter(|t| !p.exclude_tags.as_ref().is_some_and(|r| r.is_match(&t.tag)))
        .filter(|t| life.immutable(&t.tag).is_none())
        .collect();
    matching.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then(a.tag.cmp(&b.tag)));
    matching
        .into_iter()
        .skip(p.keep_last.unwrap_or(0))
        .filter(|t| older(t.pushed_at, p.older_than, now))
        .filter(|t| {
            older(
                t.pulled_at.unwrap_or(t.pushed_at).max(t.pushed_at),
                p.not_pulled_for,
                now,
            )
        })
        .collect()
}

/// What the policies remove from one image.
fn plan_image(
    life: &RepoLifecycle,
    image: &str,
    tags: &[TagInfo],
    manifests: &[ManifestAge],
    now: i64,
    report: &mut CleanupReport,
) -> Vec<Digest> {
    let mut removed: BTreeMap<&str, &str> = BTreeMap::new(); // tag -> policy
    let mut untagged: BTreeMap<Digest, &str> = BTreeMap::new();
    for p in life
        .cleanup
        .iter()
        .filter(|p| p.images.as_ref().is_none_or(|r| r.is_match(image)))
    {
        for t in tags_removed(p, life, tags, now) {
            removed.entry(&t.tag).or_insert(&p.name);
        }
        if p.untagged {
            for m in manifests
                .iter()
                .filter(|m| !m.tagged && !m.child && m.subject.is_none())
            {
                if older(m.pushed_at, p.older_than, now)
                    && older(m.last_used(), p.not_pulled_for, now)
                {
                    untagged.entry(m.digest.clone()).or_insert(&p.name);
                }
            }
        }
    }
    let kept: BTreeSet<&Digest> = tags
        .iter()
        .filter(|t| !removed.contains_key(t.tag.as_str()))
        .map(|t| &t.digest)
        .collect();
    for t in tags.iter().filter(|t| removed.contains_key(t.tag.as_str())) {
        report.tags.push(Removal {
            image: image.to_owned(),
            tag: Some(t.tag.clone()),
            digest: t.digest.to_string(),
            by: removed[t.tag.as_str()].to_owned(),
        });
    }
    // A manifest goes with its last tag (unless a live index still needs it).
    let mut gone: BTreeMap<Digest, String> = BTreeMap::new();
    for t in tags.iter().filter(|t| removed.contains_key(t.tag.as_str())) {
        let child = manifests.iter().any(|m| m.digest == t.digest && m.child);
        if !kept.contains(&t.digest) && !child {
            gone.entry(t.digest.clone())
                .or_insert_with(|| removed[t.tag.as_str()].to_owned());
        }
    }
    for (d, by) in untagged {
        gone.entry(d).or_insert_with(|| by.to_owned());
    }
    for (d, by) in &gone {
        report.manifests.push(Removal {
            image: image.to_owned(),
            tag: None,
            digest: d.to_string(),
            by: by.clone(),
        });
    }
    gone.into_keys().collect()
}

/// Every image of a repository, page by page.
async fn all_images(stores: &Stores, repo: &RepoName) -> Result<Vec<ImageName>, MetadataError> {
    let mut out: Vec<ImageName> = Vec::new();
    loop {
        let page = Page {
            after: out.last().map(ToString::to_string),
            limit: Some(1000),
        };
        let batch = stores.meta.images(repo, &page).await?;
        let done = batch.len() < 1000;
        out.extend(batch);
        if done {
            return Ok(out);
        }
    }
}

/// Runs (or, dry, previews) a repository's cleanup policies.
pub async fn cleanup(
    stores: &Stores,
    repo: &RepoName,
    life: &RepoLifecycle,
    dry_run: bool,
) -> Result<CleanupReport, MetadataError> {
    let now = now();
    let mut report = CleanupReport::new(repo, dry_run, now);
    if life.cleanup.is_empty() {
        return Ok(report);
    }
    for image in all_images(stores, repo).await? {
        let ns = Namespace::new(repo.clone(), image.clone());
        let tags = stores.meta.tag_infos(&ns).await?;
        let manifests = stores.meta.manifest_ages(&ns).await?;
        let (tags_before, manifests_before) = (report.tags.len(), report.manifests.len());
        let gone = plan_image(life, image.as_str(), &tags, &manifests, now, &mut report);
        report.bytes += stores.meta.freed_bytes(&ns, &gone).await?;
        if dry_run {
            continue;
        }
        for r in &report.tags[tags_before..] {
            let reason = format!("policy {}", r.by);
            if let Some(t) = r.tag.as_deref().and_then(|t| t.parse().ok()) {
                stores
                    .meta
                    .delete_tag(&ns, &t, Actor::new("cleanup", &reason))
                    .await?;
            }
        }
        for (r, d) in report.manifests[manifests_before..].iter().zip(&gone) {
            let reason = format!("policy {}", r.by);
            stores
                .meta
                .delete_manifest(&ns, d, Actor::new("cleanup", &reason))
                .await?;
        }
    }
    audit(&report);
    Ok(report)
}

/// Evicts (or, dry, previews evicting) a proxy's cached images by age and total size.
pub async fn evict(
    stores: &Stores,
    repo: &RepoName,
    cache: &CacheEviction,
    dry_run: bool,
) -> Result<CleanupReport, MetadataError> {
    let now = now();
    let mut report = CleanupReport::new(repo, dry_run, now);
    let mut candidates: Vec<(i64, Namespace, ManifestAge)> = Vec::new();
    for image in all_images(stores, repo).await? {
        let ns = Namespace::new(repo.clone(), image);
        for m in stores.meta.manifest_ages(&ns).await? {
            if !m.child && m.subject.is_none() {
                candidates.push((m.last_used(), ns.clone(), m));
            }
        }
    }
    candidates.sort_by_key(|(used, _, _)| *used);
    let mut size = stores.meta.usage(repo).await?.bytes;
    for (used, ns, m) in candidates {
        let by = if !older(used, cache.max_age, now) {
            match cache.max_size {
                Some(max) if size > max => "cache max_size",
                _ => break,
            }
        } else {
            "cache max_age"
        };
        let freed = stores
            .meta
            .freed_bytes(&ns, std::slice::from_ref(&m.digest))
            .await?;
        size = size.saturating_sub(freed);
        report.bytes += freed;
        report.manifests.push(Removal {
            image: ns.image.to_string(),
            tag: None,
            digest: m.digest.to_string(),
            by: by.to_owned(),
        });
        if !dry_run {
            stores
                .meta
                .evict_manifest(&ns, &m.digest, Actor::new("cleanup", by))
                .await?;
        }
    }
    audit(&report);
    Ok(report)
}

fn audit(report: &CleanupReport) {
    if report.dry_run {
        return;
    }
    for r in report.tags.iter().chain(&report.manifests) {
        tracing::info!(target: "berth_core::audit", who = "cleanup", policy = %r.by,
            repository = %report.repository, image = %r.image, tag = r.tag.as_deref().unwrap_or(""),
            digest = %r.digest, "audit");
    }
}
