//! The admin pages: repositories (origin, ports, remote status) with cleanup previews, a form
//! that creates a repository live, users, and garbage collection runs with a dry run. Changes
//! go through [`Control`](crate::registry::Control), as the admin API's do.

use http::StatusCode;
use serde_json::{json, Value};

use super::common::human;
use super::{form, Ctx, PageError, PageResult};
use crate::oci::RepoName;
use crate::registry::control::{ChangeError, RepoChange};

pub async fn admin(ctx: &Ctx<'_>) -> PageResult {
    ctx.admin_only()?;
    let reg = ctx.reg;
    let listening = reg.control.listening().await;
    let repos: Vec<Value> = reg
        .repos()
        .iter()
        .map(|(name, e)| {
            let addrs: Vec<String> = listening
                .get(name)
                .map(|v| v.iter().map(|(a, _)| a.to_string()).collect())
                .unwrap_or_default();
            let origin = serde_json::to_value(reg.control.origin(name)).unwrap_or(Value::Null);
            let status = e.repo.status();
            json!({
                "name": name.as_str(), "kind": e.repo.kind(),
                "origin": origin["source"].as_str().unwrap_or("config").replace('_', " "),
                "listening": addrs.join(", "),
                "status": if status.as_object().is_some_and(|o| o.is_empty()) { String::new() } else { status.to_string() },
            })
        })
        .collect();
    let users = match reg.control.directory().await {
        Ok(d) => Value::Array(
            d.users
                .iter()
                .map(|(u, o)| {
                    let origin = serde_json::to_value(o).unwrap_or(Value::Null);
                    json!({
                        "name": u.name, "roles": u.roles,
                        "tokens": d.tokens.iter().filter(|t| t.user == u.name).count(),
                        "origin": origin["source"].as_str().unwrap_or("").replace('_', " "),
                    })
                })
                .collect(),
        ),
        Err(_) => Value::Null,
    };
    // Directory users are a record of logins, not settings: none when it cannot be read.
    let directory_users = match &reg.auth {
        Some(auth) => auth.directory_logins().await.unwrap_or_default(),
        None => Vec::new(),
    };
    let directory_users: Vec<Value> = directory_users
        .into_iter()
        .map(|l| {
            let at = super::common::when(l.at / 1000);
            json!({
                "user": l.user, "source": l.source, "roles": l.roles, "at": at, "from": l.from,
            })
        })
        .collect();
    let gc = reg
        .lifecycle
        .status()
        .await
        .map_err(|e| PageError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    ctx.render(
        "admin.html",
        json!({
            "repos": repos, "users": users, "directory_users": directory_users,
            "gc_running": gc.running, "gc_running_on": gc.running_on, "gc_reports": gc.reports,
            "replication": super::replication::rules(ctx).await,
        }),
    )
}

/// The create form as one `repositories:` entry.
fn entry_of(f: &[(String, String)]) -> Value {
    let get = |k: &str| {
        crate::http::query_get(f, k)
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let mut v = json!({ "name": get("name"), "kind": get("kind").unwrap_or("hosted") });
    if let Some(http) = get("http") {
        v["connector"] = json!({ "http": http });
    }
    match get("kind") {
        Some("proxy") => v["remote"] = json!({ "url": get("remote") }),
        Some("group") => {
            let members: Vec<&str> = get("members")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .collect();
            v["members"] = json!(members);
        }
        _ => {}
    }
    v
}

pub async fn create(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    ctx.admin_only()?;
    let entry = entry_of(&form(body).await?);
    let done = ctx
        .reg
        .control
        .change(ctx.reg, RepoChange::Create(entry), ctx.viewer.actor())
        .await;
    match done {
        Ok(name) => Ok(ctx.done("/ui/admin", &format!("repository {name} created"))),
        Err(e) => {
            let status = match e {
                ChangeError::Conflict(_) => StatusCode::CONFLICT,
                ChangeError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(PageError::new(status, format!("not created: {e}")))
        }
    }
}

pub async fn gc(ctx: &Ctx<'_>) -> PageResult {
    ctx.admin_only()?;
    let report = ctx
        .reg
        .lifecycle
        .collect(true)
        .await
        .map_err(|e| PageError::new(StatusCode::CONFLICT, e.to_string()))?;
    let p = report.preview.clone().unwrap_or_default();
    let blobs: Vec<String> = p
        .blobs
        .iter()
        .map(|(d, s)| format!("{d} ({})", human(*s)))
        .collect();
    let summary = format!(
        "A collection now would remove {} manifests, {} blob links and {} blobs, freeing {}.",
        report.manifests_removed,
        report.links_removed,
        report.blobs_removed,
        human(report.bytes_freed)
    );
    ctx.render(
        "report.html",
        json!({
            "heading": "Garbage collection (dry run)",
            "sections": [
                { "title": "Deleted manifests past the undo window", "items": p.manifests },
                { "title": "Blob links no manifest names", "items": p.links },
                { "title": "Blobs nothing reaches", "items": blobs },
            ],
            "summary": summary,
        }),
    )
}

pub async fn cleanup(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    ctx.admin_only()?;
    let f = form(body).await?;
    let name = crate::http::query_get(&f, "repo").unwrap_or_default();
    let repo: RepoName = name
        .parse()
        .ok()
        .filter(|r| ctx.reg.repos().contains_key(r))
        .ok_or_else(|| PageError::not_found(format!("no repository named {name:?}")))?;
    let report = ctx
        .reg
        .lifecycle
        .cleanup(&repo, true)
        .await
        .map_err(|e| PageError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let line = |r: &crate::lifecycle::policy::Removal| {
        let what = r.tag.as_deref().map_or_else(
            || format!("{}@{}", r.image, r.digest),
            |t| format!("{}:{t}", r.image),
        );
        format!("{what} (by {})", r.by)
    };
    let summary = format!(
        "The policies would remove {} tags and {} manifests; the collector would then free {}.",
        report.tags.len(),
        report.manifests.len(),
        human(report.bytes)
    );
    ctx.render(
        "report.html",
        json!({
            "heading": format!("Cleanup preview of {repo}"),
            "sections": [
                { "title": "Tags", "items": report.tags.iter().map(line).collect::<Vec<_>>() },
                { "title": "Manifests", "items": report.manifests.iter().map(line).collect::<Vec<_>>() },
            ],
            "summary": summary,
        }),
    )
}
