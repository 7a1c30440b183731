//! The admin API, a front-end of its own on the main port under the context path: health,
//! and for admins repositories, users, roles and tokens, garbage collection, tag history and
//! restore, storage usage. JSON in, JSON out, its own errors ([`error`]); it shares only the
//! HTTP helpers with the registry API and the UI, and changes everything through the service
//! layer ([`crate::registry`]).
//!
//! Routing is decided from the path and method alone ([`route`]), before the body is read, so
//! that a request that is not an admin one keeps its body for the registry API.
//!
//! # Layout
//! - this file: routes, JSON bodies.
//! - `guard.rs`: who may call it, and the CSRF rule for writes; `error.rs`: its answers.
//! - `repos.rs`: repositories and certificates; `users.rs`: users, roles, tokens;
//!   `lifecycle.rs`: garbage collection, history, restore, usage; `replication.rs`: rules,
//!   runs.

pub mod error;
mod guard;
mod lifecycle;
mod replication;
mod repos;
mod users;

use std::net::IpAddr;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};

use crate::http::{response, Body};
use crate::oci::RepoName;
use crate::registry::Registry;
pub use error::{AdminError, AdminResult, Problem};

/// The OpenAPI 3.1 document of this API, served at `<context>/api/v1/openapi.json` and checked
/// against the real responses by `tests/tests/openapi.rs`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Admin request bodies are small JSON documents.
const MAX_BODY: usize = 64 * 1024;

/// `GET /api/v1/signing-key`: the fingerprint of the key registry tokens are signed with and
/// where it lives, so an operator can see that every core agrees.
fn signing_key(reg: &Registry) -> AdminResult {
    let auth = reg.auth.as_ref().ok_or_else(|| {
        AdminError::not_found("access control is off (no auth section): no tokens are signed")
    })?;
    let source = match auth.key_source() {
        crate::auth::KeySource::Store => "metadata store".to_owned(),
        crate::auth::KeySource::File(p) => p.display().to_string(),
    };
    Ok(response::json(
        StatusCode::OK,
        &serde_json::json!({ "kid": auth.key_id(), "source": source }),
    ))
}

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
    /// Replication rules and runs.
    Replication(replication::ReplRoute),
    Gc,
    /// Which key signs registry tokens (the same on every core of a metadata store).
    SigningKey,
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
    if let Some((r, allowed)) = replication::route(rest) {
        let ok = allowed.contains(&method.as_str());
        return Some(if ok {
            AdminRoute::Replication(r)
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
        "/api/v1/signing-key" => (AdminRoute::SigningKey, read, &["GET", "HEAD"]),
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

/// One admin request, from the socket's view: who the client is (behind a trusted edge),
/// the external base URL (for the `Origin` check), and the request id internal errors quote.
pub struct Call<'a> {
    pub req: &'a Parts,
    pub client: IpAddr,
    pub base: &'a str,
    pub request_id: &'a str,
}

/// Serves an admin request: health and the document to anyone; everything else to admins
/// only (without an `auth` section, to anyone: development), JSON writes from this site only.
pub async fn handle(
    reg: &Registry,
    route: AdminRoute,
    call: Call<'_>,
    body: Body,
) -> Response<Body> {
    let result = async {
        let actor = if !route.protected() {
            "anonymous".to_owned()
        } else {
            guard::forgery_guard(call.req, call.base)?;
            match &reg.auth {
                Some(auth) => match &route {
                    AdminRoute::Directory(users::DirRoute::Password(user)) => {
                        guard::admin_or_self(auth, call.req, call.client, user).await?
                    }
                    _ => guard::admin(auth, call.req, call.client).await?,
                },
                None => "anonymous".to_owned(),
            }
        };
        serve(reg, route, call.req, body, &actor).await
    };
    result
        .await
        .unwrap_or_else(|e| e.into_response(call.request_id))
}

/// Serves an admin endpoint; `actor` is the admin's name for audit lines and tag history.
async fn serve(
    reg: &Registry,
    route: AdminRoute,
    req: &Parts,
    body: Body,
    actor: &str,
) -> AdminResult {
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
        AdminRoute::Replication(r) => {
            let takes_body = matches!(
                (&r, &req.method),
                (replication::ReplRoute::Rules, &Method::POST)
                    | (replication::ReplRoute::Rule(_), &Method::PUT)
            );
            let body = match takes_body {
                true => Some(json_body(body).await?),
                false => None,
            };
            replication::serve(reg, r, req, body, actor).await
        }
        AdminRoute::Gc if req.method == Method::POST => lifecycle::run_gc(reg, req, actor).await,
        AdminRoute::Gc => lifecycle::gc_status(reg).await,
        AdminRoute::SigningKey => signing_key(reg),
        AdminRoute::Usage(repo) => lifecycle::usage(reg, &repo_name(reg, &repo)?).await,
        AdminRoute::History(repo) => lifecycle::history(reg, &repo_name(reg, &repo)?, req).await,
        AdminRoute::Cleanup(repo) => {
            lifecycle::cleanup(reg, &repo_name(reg, &repo)?, req, actor).await
        }
        AdminRoute::Restore(repo) => {
            let repo = repo_name(reg, &repo)?;
            lifecycle::restore(reg, &repo, json_body(body).await?, actor).await
        }
        AdminRoute::Unknown { allowed: [] } => Err(AdminError::not_found(format!(
            "no admin endpoint at {}",
            req.uri.path()
        ))),
        AdminRoute::Unknown { allowed } => Err(AdminError::new(
            Problem::MethodNotAllowed,
            format!("method {} is not supported here", req.method),
        )
        .with_header("allow", allowed.join(", "))),
    }
}

/// A configured repository by name (`NOT_FOUND` otherwise).
fn repo_name(reg: &Registry, name: &str) -> Result<RepoName, AdminError> {
    name.parse::<RepoName>()
        .ok()
        .filter(|n| reg.repos().contains_key(n))
        .ok_or_else(|| AdminError::not_found(format!("no repository named {name:?}")))
}

/// A JSON request body of at most [`MAX_BODY`] bytes.
async fn json_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, AdminError> {
    let bytes: Bytes = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map_err(|e| AdminError::invalid(format!("reading the request body: {e}")))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| AdminError::invalid(format!("request body is not the JSON expected: {e}")))
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
