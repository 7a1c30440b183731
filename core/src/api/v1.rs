//! The V1 API subset `docker search` still uses: `GET /v1/_ping` and `GET /v1/search`.
//!
//! Off by default per repository. When off, every V1 path gets a JSON error that says how to
//! turn it on, and no V1 headers, so clients do not mistake the port for a V1 registry.

use http::request::Parts;
use http::{Method, StatusCode};

use super::response;
use super::route::Route;
use super::ApiError;
use super::{err, query, query_get, ApiResult, Listener, Registry};
use crate::oci::ErrorCode;

/// Most names one search returns before paging.
const MAX_SEARCH: usize = 1000;

fn disabled(msg: String) -> ApiError {
    err(ErrorCode::Unsupported, msg).with_status(StatusCode::NOT_FOUND)
}

pub async fn handle(
    _reg: &Registry,
    listener: &Listener,
    route: Route<'_>,
    req: &Parts,
) -> ApiResult {
    let entry = match listener {
        Listener::Connector(e) => e,
        Listener::Main => {
            return Err(disabled(
                "the V1 API is served on repository connectors, not on the main port".into(),
            ))
        }
    };
    if !entry.v1_enabled {
        return Err(disabled(format!(
            "the V1 API is disabled for repository {}; set v1_enabled: true to allow docker search",
            entry.repo.name()
        )));
    }
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(super::method_not_allowed(&req.method));
    }
    match route {
        Route::V1Ping => {
            let mut r = response::json(StatusCode::OK, &serde_json::json!({}));
            response::set(&mut r, "x-docker-registry-version", "0.6.0");
            response::set(&mut r, "x-docker-registry-standalone", "True");
            Ok(r)
        }
        Route::V1Search => {
            let q = query(req);
            let term = query_get(&q, "q").unwrap_or("").to_owned();
            let n = query_get(&q, "n")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(25)
                .clamp(1, 100);
            let page = query_get(&q, "page")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            // Members of a group, and a proxy's remote, answer too (Repository::search).
            let matches: Vec<String> = entry.repo.search(&term, MAX_SEARCH).await?;
            let results: Vec<_> = matches
                .iter()
                .skip((page - 1) * n)
                .take(n)
                .map(|name| {
                    serde_json::json!({
                        "name": name,
                        "description": "",
                        "star_count": 0,
                        "is_official": false,
                        "is_automated": false,
                    })
                })
                .collect();
            let mut r = response::json(
                StatusCode::OK,
                &serde_json::json!({
                    "num_results": matches.len(),
                    "num_pages": matches.len().div_ceil(n),
                    "page": page,
                    "page_size": n,
                    "query": term,
                    "results": results,
                }),
            );
            response::set(&mut r, "x-docker-registry-version", "0.6.0");
            Ok(r)
        }
        _ => Err(disabled("only /v1/_ping and /v1/search are served".into())),
    }
}
