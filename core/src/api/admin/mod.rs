//! The main port's own endpoints, under the context path: health, and the admin API (admins
//! only) — repositories, garbage collection, tag history and restore, storage usage.
//!
//! Routing is decided from the path and method alone ([`route`]), before the body is read, so
//! that a request that is not an admin one keeps its body for the registry API.
//!
//! # Layout
//! - this file: routes, JSON bodies, errors.
//! - `lifecycle.rs`: garbage collection, history, restore, usage.

mod lifecycle;
mod repos;
mod users;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::{err, response, ApiError, ApiResult, Body, Registry};
use crate::oci::{ErrorCode, RepoName};

/// The OpenAPI 3.1 document of this API, served at `<context>/api/v1/openapi.json` and checked
/// against the real responses by `tests/tests/openapi.rs`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Admin request bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;

/// An admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    Health,
    /// The OpenAPI document of this API.
    OpenApi,
    Repositories,
    /// One repository's settings: `GET`, `PUT`, `DELETE`.
    Repository(String),
    Certificates,
    /// Users, roles, tokens.
    Directory(users::DirRoute),
    Gc,
    Usage(String),
    History(String),
    Restore(String),
    Cleanup(String),
    /// Under `/api/` but no such endpoint (or method).
    Unknown {
        allowed: &'static [&'static str],
    },
}

impl AdminRoute {
    /// Whether it needs an admin user (everything but health).
    pub fn protected(&self) -> bool {
        !matches!(self, AdminRoute::Health | AdminRoute::OpenApi)
    }
}

/// The admin endpoint `path` names, if any.
pub fn route(reg: &Registry, path: &str, method: &Method) -> Option<AdminRoute> {
    route_under(path.strip_prefix(reg.context_path.as_str())?, method)
}

/// The admin endpoint of `rest`, the path under the context path.
fn route_under(rest: &str, method: &Method) -> Option<AdminRoute> {
    let read = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    let repo_path = |suffix: &str| {
        rest.strip_prefix("/api/v1/repositories/")
            .and_then(|r| r.strip_suffix(suffix))
            .filter(|r| !r.contains('/'))
            .map(str::to_owned)
    };
    if let Some((r, allowed)) = users::route(rest) {
        let ok = allowed.contains(&method.as_str());
        return Some(if ok {
            AdminRoute::Directory(r)
        } else {
            AdminRoute::Unknown { allowed }
        });
    }
    let (r, ok, allowed): (AdminRoute, bool, &'static [&'static str]) = match rest {
        "/health" | "/health/" => (AdminRoute::Health, read, &["GET", "HEAD"]),
        "/api/v1/openapi.json" => (AdminRoute::OpenApi, read, &["GET", "HEAD"]),
        "/api/v1/repositories" => (
            AdminRoute::Repositories,
            read || post,
            &["GET", "HEAD", "POST"],
        ),
        "/api/v1/certificates" => (AdminRoute::Certificates, read, &["GET", "HEAD"]),
        "/api/v1/gc" => (AdminRoute::Gc, read || post, &["GET", "HEAD", "POST"]),
        _ => {
            if let Some(repo) = repo_path("/usage") {
                (AdminRoute::Usage(repo), read, &["GET", "HEAD"])
            } else if let Some(repo) = repo_path("/history") {
                (AdminRoute::History(repo), read, &["GET", "HEAD"])
            } else if let Some(repo) = repo_path("/cleanup") {
                (
                    AdminRoute::Cleanup(repo),
                    read || post,
                    &["GET", "HEAD", "POST"],
                )
            } else if let Some(repo) = repo_path("/restore") {
                (AdminRoute::Restore(repo), post, &["POST"])
            } else if let Some(repo) = repo_path("") {
                let ok = read || method == Method::PUT || method == Method::DELETE;
                (
                    AdminRoute::Repository(repo),
                    ok,
                    &["GET", "HEAD", "PUT", "DELETE"],
                )
            } else if rest.starts_with("/api/") {
                return Some(AdminRoute::Unknown { allowed: &[] });
            } else {
                return None;
            }
        }
    };
    Some(if ok {
        r
    } else {
        AdminRoute::Unknown { allowed }
    })
}

/// Serves an admin endpoint; `actor` is the admin's name for audit lines and tag history.
pub async fn serve(
    reg: &Registry,
    route: AdminRoute,
    req: &Parts,
    body: Body,
    actor: &str,
) -> ApiResult {
    match route {
        AdminRoute::Health => Ok(response::json(
            StatusCode::OK,
            &serde_json::json!({ "status": "ok" }),
        )),
        AdminRoute::OpenApi => Ok(response::json_bytes(
            StatusCode::OK,
            OPENAPI.as_bytes().to_vec(),
            "application/json",
        )),
        AdminRoute::Repositories if req.method == Method::POST => {
            repos::change(reg, None, req, Some(json_body(body).await?), actor).await
        }
        AdminRoute::Repositories => repos::list(reg).await,
        AdminRoute::Repository(name) => {
            let body = match req.method {
                Method::PUT => Some(json_body(body).await?),
                _ => None,
            };
            repos::change(reg, Some(name), req, body, actor).await
        }
        AdminRoute::Certificates => repos::certificates(reg).await,
        AdminRoute::Directory(r) => {
            let body = match req.method {
                Method::POST | Method::PUT => Some(json_body(body).await?),
                _ => None,
            };
            users::serve(reg, r, req, body, actor).await
        }
        AdminRoute::Gc if req.method == Method::POST => lifecycle::run_gc(reg, req, actor).await,
        AdminRoute::Gc => Ok(lifecycle::gc_status(reg)),
        AdminRoute::Usage(repo) => lifecycle::usage(reg, &repo_name(reg, &repo)?).await,
        AdminRoute::History(repo) => lifecycle::history(reg, &repo_name(reg, &repo)?, req).await,
        AdminRoute::Cleanup(repo) => {
            lifecycle::cleanup(reg, &repo_name(reg, &repo)?, req, actor).await
        }
        AdminRoute::Restore(repo) => {
            let repo = repo_name(reg, &repo)?;
            lifecycle::restore(reg, &repo, json_body(body).await?, actor).await
        }
        AdminRoute::Unknown { allowed: [] } => Err(err(
            ErrorCode::NameUnknown,
            format!("no admin endpoint at {}", req.uri.path()),
        )
        .with_status(StatusCode::NOT_FOUND)),
        AdminRoute::Unknown { allowed } => {
            Err(super::method_not_allowed(&req.method).with_header("allow", allowed.join(", ")))
        }
    }
}

/// What a browser cannot be made to send from another site: the admin API answers Basic
/// challenges (so a browser may hold an admin's credentials for the origin), so every write
/// must be JSON — a cross-site form or a no-CORS `fetch` can only send form, multipart or plain
/// text bodies, and anything else needs a preflight this API never grants — and must not be
/// marked cross-site by `Sec-Fetch-Site` or carry a foreign `Origin`.
pub fn forgery_guard(req: &Parts, base: &str) -> Result<(), ApiError> {
    if req.method == Method::GET || req.method == Method::HEAD {
        return Ok(());
    }
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let forbidden = |m: String| err(ErrorCode::Denied, m);
    if let Some(site @ ("cross-site" | "same-site")) = header("sec-fetch-site") {
        return Err(forbidden(format!(
            "admin API writes from another site are refused (Sec-Fetch-Site: {site})"
        )));
    }
    if let Some(origin) = header("origin") {
        if !origin.eq_ignore_ascii_case(base) {
            return Err(forbidden(format!(
                "admin API writes from another origin are refused (Origin: {origin})"
            )));
        }
    }
    if req.method != Method::DELETE {
        let json = header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(err(
                ErrorCode::Unsupported,
                "admin API writes take Content-Type: application/json (with or without a body)",
            )
            .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
    }
    Ok(())
}

/// A configured repository by name (`NAME_UNKNOWN` otherwise).
fn repo_name(reg: &Registry, name: &str) -> Result<RepoName, ApiError> {
    name.parse::<RepoName>()
        .ok()
        .filter(|n| reg.repos().contains_key(n))
        .ok_or_else(|| {
            err(
                ErrorCode::NameUnknown,
                format!("no repository named {name:?}"),
            )
        })
}

/// A JSON request body of at most [`MAX_BODY`] bytes.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes: Bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| {
            err(
                ErrorCode::Unsupported,
                format!("reading the request body: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        err(
            ErrorCode::Unsupported,
            format!("request body is not the JSON expected: {e}"),
        )
        .with_status(StatusCode::BAD_REQUEST)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation the document lists is one this module routes (the black-box test then
    /// checks each answers as documented).
    #[test]
    fn every_documented_operation_is_routed() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (template, ops) in paths {
            let path = template
                .split('/')
                .map(|s| if s.starts_with('{') { "x1" } else { s })
                .collect::<Vec<_>>()
                .join("/");
            for method in ops
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
            {
                let m: Method = method.to_uppercase().parse().unwrap();
                let r = route_under(&path, &m);
                assert!(
                    matches!(r, Some(ref x) if !matches!(x, AdminRoute::Unknown { .. })),
                    "{method} {template} is documented but routes to {r:?}"
                );
            }
        }
    }
}
