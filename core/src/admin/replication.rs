//! Admin endpoints of replication: the rules with whether each runs now, a run started by
//! hand, and a rule's runs (every core's, newest first).

use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;

use super::error::{AdminError, AdminResult};
use crate::http::{query, query_get, response};
use crate::registry::{Registry, Served};
use crate::replicate::StartError;

/// Runs listed unless fewer are asked for.
const RUNS_LIMIT: u32 = 20;

/// A replication endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplRoute {
    Rules,
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
        [""] => (ReplRoute::Rules, &["GET", "HEAD"]),
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

pub(super) async fn serve(reg: &Registry, r: ReplRoute, req: &Parts, actor: &str) -> AdminResult {
    match r {
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
