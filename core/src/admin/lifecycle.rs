//! Admin endpoints of the life-cycle: run or preview a garbage collection, see the last runs,
//! a repository's storage usage, tag history, and restore a deleted or moved tag or manifest.

use http::request::Parts;
use http::StatusCode;
use serde::Deserialize;

use super::error::{AdminError, AdminResult};
use crate::http::{query, query_get, response};
use crate::lifecycle::{LeaseError, RunError};
use crate::oci::{Digest, ImageName, RepoName, Tag};
use crate::registry::Registry;
use crate::storage::metadata::lifecycle::Restore;
use crate::storage::Namespace;

/// Events a history request returns unless it asks for fewer.
const HISTORY_LIMIT: usize = 100;
const HISTORY_MAX: usize = 10_000;

fn internal(e: impl std::fmt::Display) -> AdminError {
    AdminError::internal(e)
}

fn flag(req: &Parts, key: &str) -> bool {
    let q = query(req);
    matches!(query_get(&q, key), Some("" | "true" | "1" | "yes"))
}

/// `POST /api/v1/gc[?dry_run=true]`: runs one collection and answers its report. The run goes
/// on in its own task, so a client that hangs up does not stop it halfway.
pub(super) async fn run_gc(reg: &Registry, req: &Parts, actor: &str) -> AdminResult {
    let dry_run = flag(req, "dry_run");
    tracing::info!(target: "berth_core::audit", who = actor, action = "gc", dry_run, "audit");
    let lifecycle = reg.lifecycle.clone();
    let run = tokio::spawn(async move { lifecycle.collect(dry_run).await });
    match run.await.map_err(internal)? {
        Ok(report) => Ok(response::json(StatusCode::OK, &serde_json::json!(report))),
        Err(RunError::Running) => Err(AdminError::conflict(
            "a garbage collection is already running in this core; try again when it is done",
        )),
        Err(RunError::Lease(LeaseError::Held { holder, .. })) => Err(AdminError::conflict(
            format!("a garbage collection is running on {holder}; try again when it is done"),
        )),
        Err(e) => Err(internal(e)),
    }
}

/// `GET /api/v1/gc`: settings, whether a run is going on (on any core), the latest reports of
/// every core.
pub(super) async fn gc_status(reg: &Registry) -> AdminResult {
    let s = &reg.lifecycle.gc;
    let status = reg.lifecycle.status().await.map_err(internal)?;
    Ok(response::json(
        StatusCode::OK,
        &serde_json::json!({
            "running": status.running,
            "running_on": status.running_on,
            "core": reg.lifecycle.core(),
            "interval_seconds": s.interval.map(|i| i.as_secs()),
            "grace_seconds": s.grace.as_secs(),
            "undo_window_seconds": s.undo_window.as_secs(),
            "history_retention_seconds": s.history.as_secs(),
            "reports": status.reports,
        }),
    ))
}

/// `GET /api/v1/repositories/{repo}/cleanup`: the policies and the last run;
/// `POST ...[?dry_run=true]`: runs them now (or lists exactly what they would remove).
pub(super) async fn cleanup(
    reg: &Registry,
    repo: &RepoName,
    req: &Parts,
    actor: &str,
) -> AdminResult {
    let life = reg.lifecycle.repo(repo);
    if req.method != http::Method::POST {
        let policies: Vec<serde_json::Value> = life
            .as_ref()
            .map(|l| {
                l.cleanup
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.name,
                            "images": p.images.as_ref().map(|r| r.as_str()),
                            "tags": p.tags.as_ref().map(|r| r.as_str()),
                            "exclude_tags": p.exclude_tags.as_ref().map(|r| r.as_str()),
                            "keep_last": p.keep_last,
                            "older_than_seconds": p.older_than.map(|d| d.as_secs()),
                            "not_pulled_for_seconds": p.not_pulled_for.map(|d| d.as_secs()),
                            "untagged": p.untagged,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({
                "policies": policies,
                "immutable_tags": life.as_ref().map(|l| l.immutable_tags.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>()),
                "quota": life.as_ref().and_then(|l| l.quota),
                "last_run": reg.lifecycle.last_cleanups(Some(repo)).await.map_err(internal)?.pop(),
            }),
        ));
    }
    let dry_run = flag(req, "dry_run");
    tracing::info!(target: "berth_core::audit", who = actor, action = "cleanup",
        repository = %repo, dry_run, "audit");
    let report = reg
        .lifecycle
        .cleanup(repo, dry_run)
        .await
        .map_err(internal)?;
    Ok(response::json(StatusCode::OK, &serde_json::json!(report)))
}

/// `GET /api/v1/repositories/{repo}/usage`.
pub(super) async fn usage(reg: &Registry, repo: &RepoName) -> AdminResult {
    let usage = reg
        .lifecycle
        .stores()
        .meta
        .usage(repo)
        .await
        .map_err(internal)?;
    Ok(response::json(StatusCode::OK, &serde_json::json!(usage)))
}

fn image_param(q: &[(String, String)]) -> Result<ImageName, AdminError> {
    let image = query_get(q, "image")
        .ok_or_else(|| AdminError::invalid("the image query parameter is required"))?;
    image
        .parse()
        .map_err(|e| AdminError::invalid(format!("image {image:?}: {e}")))
}

/// `GET /api/v1/repositories/{repo}/history?image=I[&tag=T][&limit=N]`: newest first.
pub(super) async fn history(reg: &Registry, repo: &RepoName, req: &Parts) -> AdminResult {
    let q = query(req);
    let ns = Namespace::new(repo.clone(), image_param(&q)?);
    let tag = query_get(&q, "tag")
        .map(|t| {
            t.parse::<Tag>()
                .map_err(|e| AdminError::invalid(format!("tag {t:?}: {e}")))
        })
        .transpose()?;
    let limit = match query_get(&q, "limit") {
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| AdminError::invalid(format!("limit {n:?} is not a number")))?
            .min(HISTORY_MAX),
        None => HISTORY_LIMIT,
    };
    let events = crate::registry::content::history(reg, &ns, tag.as_ref(), limit)
        .await
        .map_err(internal)?;
    Ok(response::json(StatusCode::OK, &serde_json::json!(events)))
}

/// What to restore: a tag (to what it pointed at before its last change, or to `digest`), or
/// a manifest by digest (with the tags its deletion removed).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreRequest {
    image: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// The image, tag and digest a restore names; at least one of tag and digest.
fn restore_target(
    body: &RestoreRequest,
) -> Result<(ImageName, Option<Tag>, Option<Digest>), AdminError> {
    let image: ImageName = body
        .image
        .parse()
        .map_err(|e| AdminError::invalid(format!("image {:?}: {e}", body.image)))?;
    let tag = body
        .tag
        .as_deref()
        .map(|t| {
            t.parse::<Tag>()
                .map_err(|e| AdminError::invalid(format!("tag {t:?}: {e}")))
        })
        .transpose()?;
    let digest = body
        .digest
        .as_deref()
        .map(|d| {
            d.parse::<Digest>()
                .map_err(|e| AdminError::invalid(format!("digest {d:?}: {e}")))
        })
        .transpose()?;
    if tag.is_none() && digest.is_none() {
        return Err(AdminError::invalid(
            "name a tag, a digest or both to restore",
        ));
    }
    Ok((image, tag, digest))
}

/// `POST /api/v1/repositories/{repo}/restore`.
pub(super) async fn restore(
    reg: &Registry,
    repo: &RepoName,
    body: RestoreRequest,
    actor: &str,
) -> AdminResult {
    let (image, tag, digest) = restore_target(&body)?;
    let ns = Namespace::new(repo.clone(), image);
    let done = crate::registry::content::restore(reg, &ns, tag.as_ref(), digest.as_ref(), actor)
        .await
        .map_err(internal)?;
    match done {
        Restore::Done {
            digest,
            manifests,
            tags,
        } => Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({
                "digest": digest.to_string(),
                "tags": tags,
                "manifests_restored": manifests,
            }),
        )),
        Restore::NoHistory => Err(AdminError::not_found(format!(
            "{}: no earlier state of {} to restore",
            ns.path(),
            tag.map_or("that manifest".to_owned(), |t| format!("tag {t}"))
        ))),
        Restore::Collected(d) => Err(AdminError::not_found(format!(
            "{}@{d} is gone: garbage collection removed it after the undo window",
            ns.path()
        ))),
    }
}
