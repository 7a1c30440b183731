//! Replication on the admin page: every rule with where it copies, what it filters, when it
//! runs, and its last run on any core; a button to run it now. The same service calls as the
//! admin API (`reg.replication`).

use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};

use super::{form, Ctx, PageError, PageResult};
use crate::registry::Served;
use crate::replicate::StartError;

/// The rules as the admin page shows them.
pub(super) async fn rules(ctx: &Ctx<'_>) -> Vec<Value> {
    let repl = &ctx.reg.replication;
    let Ok(rules) = repl.status().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in rules {
        let last = repl
            .runs(&r.name, 1)
            .await
            .ok()
            .flatten()
            .and_then(|runs| runs.into_iter().next())
            .map(|run| {
                let at = super::common::when(run["finished_at"].as_i64().unwrap_or(0) / 1000);
                json!({
                    "outcome": run["outcome"], "at": at, "trigger": run["trigger"],
                    "copied": run["images_copied"], "skipped": run["images_skipped"],
                    "bytes": super::common::human(run["bytes_copied"].as_u64().unwrap_or(0)),
                    "failed": run["failed"], "error": run["error"],
                })
            });
        let (from, to) = match r.direction {
            crate::replicate::Direction::Push => (r.repository.clone(), r.remote.clone()),
            crate::replicate::Direction::Pull => (r.remote.clone(), r.repository.clone()),
        };
        let mut when = Vec::new();
        if r.on_push {
            when.push("on push".to_owned());
        }
        if let Some(s) = r.schedule {
            when.push(format!("every {}", humantime(s)));
        }
        when.push("by hand".to_owned());
        out.push(json!({
            "name": r.name, "from": from, "to": to,
            "images": r.images, "tags": r.tags, "destination": r.destination,
            "when": when.join(", "), "delete": r.delete, "running_on": r.running_on, "last": last,
        }));
    }
    out
}

fn humantime(secs: u64) -> String {
    match secs {
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `POST /ui/admin/replication/run` (`name`): starts a run, back to the admin page.
pub(super) async fn run(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    ctx.admin_only()?;
    let f = form(body).await?;
    let name = crate::http::query_get(&f, "name")
        .unwrap_or_default()
        .to_owned();
    let served = Arc::new(Served(ctx.reg.repos()));
    tracing::info!(target: "berth_core::audit", who = ctx.viewer.actor(), action = "replicate", rule = %name, "audit");
    match ctx.reg.replication.start(served, &name, "manual").await {
        Ok(()) => Ok(ctx.done(
            "/ui/admin",
            &format!("replication {name} started; its run appears below when done"),
        )),
        Err(e @ StartError::NoSuchRule(_)) => Err(PageError::not_found(e.to_string())),
        Err(e @ StartError::Running { .. }) => {
            Err(PageError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(StartError::Store(e)) => Err(PageError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}
