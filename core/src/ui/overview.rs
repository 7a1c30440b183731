//! The figures the first pages show, as Harbor's and Nexus's do: per repository its images,
//! storage used (against its quota) and last push; per image its tags, size, last push and
//! pull; and, for admins, the whole: total storage, the last collections and cleanup runs
//! with what they freed, and proxy remotes that are blocked. All of it is read from the
//! metadata store (shared by every core), except a remote's health, which each core judges
//! for itself and says so.

use serde_json::{json, Value};

use super::common::{human, when};
use super::Ctx;
use crate::registry::RepoEntry;
use crate::repo::RepoKind;
use crate::storage::metadata::summary::ImageSummary;

/// What the repository list shows of one repository beside its name: images, storage (and
/// quota), last push. A store that cannot answer leaves the figures out.
pub async fn repo_figures(ctx: &Ctx<'_>, entry: &RepoEntry) -> Value {
    let name = entry.repo.name();
    let quota = ctx.reg.lifecycle.repo(name).and_then(|l| l.quota);
    // A group holds nothing of its own: its members' figures are on their rows.
    if entry.repo.kind() == RepoKind::Group {
        return json!({});
    }
    let Ok(u) = ctx.reg.lifecycle.stores().meta.usage(name).await else {
        return json!({});
    };
    let used = human(u.bytes);
    json!({
        "images": u.images,
        "storage": match quota {
            Some(q) => format!("{used} of {} ({}%)", human(q), u.bytes.saturating_mul(100) / q.max(1)),
            None => used,
        },
        "over": quota.is_some_and(|q| u.bytes * 10 >= q * 9),
        "pushed": u.last_pushed_at.map(when),
    })
}

/// Each image on a repository page, with its tags, size, last push and pull (from the store;
/// an image the store does not hold itself, such as a group's, has its name only).
pub async fn image_rows(ctx: &Ctx<'_>, entry: &RepoEntry, images: &[String]) -> Vec<Value> {
    let (Some(first), Some(last)) = (images.first(), images.last()) else {
        return Vec::new();
    };
    let summaries: Vec<ImageSummary> = ctx
        .reg
        .lifecycle
        .stores()
        .meta
        .image_summaries(entry.repo.name(), first, last)
        .await
        .unwrap_or_default();
    images
        .iter()
        .map(|i| match summaries.iter().find(|s| &s.image == i) {
            Some(s) => json!({
                "name": i, "tags": s.tags, "size": human(s.bytes),
                "pushed": s.pushed_at.map(when), "pulled": s.pulled_at.map(when),
            }),
            None => json!({ "name": i }),
        })
        .collect()
}

/// The admin's overview: total storage, the last collection and cleanup runs, blocked remotes.
pub async fn overview(ctx: &Ctx<'_>) -> Value {
    let life = &ctx.reg.lifecycle;
    let total = life.stores().meta.blob_totals().await.ok();
    let gc = life
        .status()
        .await
        .ok()
        .and_then(|s| {
            s.reports
                .into_iter()
                .find(|r| r["dry_run"].as_bool() == Some(false))
        })
        .map(|r| {
            json!({
                "at": r["started_at"].as_i64().map(when), "core": r["core"],
                "freed": human(r["bytes_freed"].as_u64().unwrap_or(0)),
                "blobs": r["blobs_removed"], "manifests": r["manifests_removed"],
            })
        });
    let cleanups: Vec<Value> = life
        .last_cleanups(None)
        .await
        .unwrap_or_default()
        .iter()
        .map(|r| {
            json!({
                "repo": r["repository"], "at": r["at"].as_i64().map(when), "core": r["core"],
                "tags": r["tags"].as_array().map_or(0, Vec::len),
                "manifests": r["manifests"].as_array().map_or(0, Vec::len),
                "bytes": human(r["bytes"].as_u64().unwrap_or(0)),
            })
        })
        .collect();
    let blocked: Vec<Value> = ctx
        .reg
        .repos()
        .values()
        .filter(|e| e.repo.kind() == RepoKind::Proxy)
        .filter_map(|e| {
            let s = e.repo.status();
            (s["state"] != "healthy").then(|| {
                json!({
                    "repo": e.repo.name().as_str(), "remote": s["remote"], "state": s["state"],
                    "error": s["last_error"], "for": s["blocked_for_seconds"],
                })
            })
        })
        .collect();
    json!({
        "storage": total.map(|(blobs, bytes)| format!("{} in {blobs} blobs", human(bytes))),
        "gc": gc, "cleanups": cleanups, "remotes": blocked,
    })
}
