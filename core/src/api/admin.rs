//! The main port's own endpoints, under the context path: health and a read-only view of the
//! configured repositories. (Access control and write operations arrive with the auth issue.)

use http::{Method, StatusCode};

use super::response;
use super::{ApiResult, Registry};

/// Whether `path` is an admin endpoint that needs an admin user (everything but health).
pub fn protected(reg: &Registry, path: &str) -> bool {
    path.strip_prefix(reg.context_path.as_str())
        .is_some_and(|rest| rest.starts_with("/api/"))
}

/// Returns `Some` if `path` is an admin endpoint.
pub fn handle(reg: &Registry, path: &str, method: &Method) -> Option<ApiResult> {
    let rest = path.strip_prefix(reg.context_path.as_str())?;
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    match rest {
        "/health" | "/health/" => Some(Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok" }),
        ))),
        "/api/v1/repositories" => {
            let repos: Vec<_> = reg
                .repos
                .values()
                .map(|e| {
                    serde_json::json!({
                        "name": e.repo.name().as_str(),
                        "kind": e.repo.kind(),
                        "v1_enabled": e.v1_enabled,
                        "status": e.repo.status(),
                    })
                })
                .collect();
            Some(Ok(response::json(
                StatusCode::OK,
                &serde_json::json!(repos),
            )))
        }
        _ => None,
    }
}
