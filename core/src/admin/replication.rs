//! Admin endpoints of replication: the rules with whether each runs now, rules created,
//! replaced and deleted at run time (for every core, through the service layer), a run
//! started by hand, and a rule's runs (every core's, newest first).

use std::sync::Arc;

use http::request::Parts;
use http::{Method, StatusCode};

use super::error::{AdminError, AdminResult};
use crate::http::{query, query_get, response};
use crate::registry::control::ChangeError;
use crate::registry::{Registry, Served};
use crate::replicate::StartError;

/// Runs listed unless fewer are asked for.
const RUNS_LIMIT: u32 = 20;

/// A replication endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplRoute {
    Rules,
    Rule(String),
    Run(String),
    Runs(String),
}

/// The endpoint `rest` names, with the methods it takes.
pub fn route(rest: &str) -> Option<(ReplRoute, &'static [&'static str])> {
    let segs: Vec<&str> = rest
        .strip_prefix("/api/v1/replication")?
        .split('/')
        .collect();
    Some(match segs.as_slice() {
        [""] => (ReplRoute::Rules, &["GET", "HEAD", "POST"]),
        ["", name] if !name.is_empty() => (
            ReplRoute::Rule((*name).to_owned()),
            &["GET", "HEAD", "PUT", "DELETE"],
        ),
        ["", name, "run"] if !name.is_empty() => (ReplRoute::Run((*name).to_owned()), &["POST"]),
        ["", name, "runs"] if !name.is_empty() => {
            (ReplRoute::Runs((*name).to_owned()), &["GET", "HEAD"])
        }
        _ => return None,
    })
}

fn internal(e: impl std::fmt::Display) -> AdminError {
    AdminError::internal(e)
}

fn changed(e: ChangeError) -> AdminError {
    match e {
        ChangeError::Invalid { key, reason } => AdminError::invalid(format!("{key}: {reason}")),
        e @ ChangeError::NotFound { .. } => AdminError::not_found(e.to_string()),
        e @ ChangeError::Conflict(_) => AdminError::conflict(e.to_string()),
        e => internal(e),
    }
}

/// One rule as listed, or `NOT_FOUND`.
async fn one(reg: &Registry, name: &str) -> AdminResult {
    let rules = reg.replication.status().await.map_err(internal)?;
    let rule = rules
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| AdminError::not_found(format!("no replication rule named {name:?}")))?;
    Ok(response::json(StatusCode::OK, &serde_json::json!(rule)))
}

pub(super) async fn serve(
    reg: &Registry,
    r: ReplRoute,
    req: &Parts,
    body: Option<serde_json::Value>,
    actor: &str,
) -> AdminResult {
    match r {
        ReplRoute::Rules if req.method == Method::POST => {
            let entry = body.unwrap_or_default();
            let name = entry["name"]
                .as_str()
                .ok_or_else(|| AdminError::invalid("name: a rule needs a name"))?
                .to_owned();
            if reg.replication.rules().iter().any(|r| r.name == name) {
                return Err(AdminError::conflict(format!(
                    "a replication rule named {name} exists; PUT /api/v1/replication/{name} replaces it"
                )));
            }
            reg.control
                .change_rule(reg, &name, Some(entry), actor)
                .await
                .map_err(changed)?;
            let mut r = one(reg, &name).await?;
            *r.status_mut() = StatusCode::CREATED;
            Ok(r)
        }
        ReplRoute::Rule(name) if req.method == Method::PUT => {
            reg.control
                .change_rule(reg, &name, body, actor)
                .await
                .map_err(changed)?;
            one(reg, &name).await
        }
        ReplRoute::Rule(name) if req.method == Method::DELETE => {
            reg.control
                .change_rule(reg, &name, None, actor)
                .await
                .map_err(changed)?;
            Ok(response::status(StatusCode::NO_CONTENT))
        }
        ReplRoute::Rule(name) => one(reg, &name).await,
        ReplRoute::Rules => {
            let rules = reg.replication.status().await.map_err(internal)?;
            Ok(response::json(StatusCode::OK, &serde_json::json!(rules)))
        }
        ReplRoute::Runs(name) => {
            let q = query(req);
            let limit = query_get(&q, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(RUNS_LIMIT)
                .clamp(1, 100);
            let runs = reg
                .replication
                .runs(&name, limit)
                .await
                .map_err(internal)?
                .ok_or_else(|| {
                    AdminError::not_found(format!("no replication rule named {name:?}"))
                })?;
            Ok(response::json(StatusCode::OK, &serde_json::json!(runs)))
        }
        ReplRoute::Run(name) => {
            tracing::info!(target: "berth_core::audit", who = actor, action = "replicate", rule = %name, "audit");
            let served = Arc::new(Served(reg.repos()));
            match reg.replication.start(served, &name, "manual").await {
                Ok(()) => Ok(response::json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({ "rule": name, "started": true }),
                )),
                Err(e @ StartError::NoSuchRule(_)) => Err(AdminError::not_found(e.to_string())),
                Err(e @ StartError::Running { .. }) => Err(AdminError::conflict(e.to_string())),
                Err(StartError::Store(e)) => Err(internal(e)),
            }
        }
    }
}
