//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, both paged with `n` and `last` and a
//! `Link: <...>; rel="next"` header while more remain.

use http::request::Parts;
use http::{Method, StatusCode};

use super::response::{self, Body};
use super::{err, ApiError};
use super::{method_not_allowed, query, query_get, ApiResult, Listener, Registry, Target};
use crate::oci::ErrorCode;

/// Applies `n`/`last` to a sorted list; returns the page and whether more remain.
fn page(all: Vec<String>, req: &Parts) -> Result<(Vec<String>, Option<usize>, bool), ApiError> {
    let q = query(req);
    let n = match query_get(&q, "n") {
        None | Some("") => None,
        Some(v) => Some(v.parse::<usize>().map_err(|_| {
            err(
                ErrorCode::Unsupported,
                format!("n={v:?} is not a non-negative number"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?),
    };
    let last = query_get(&q, "last").filter(|l| !l.is_empty());
    let rest: Vec<String> = match last {
        Some(l) => all.into_iter().filter(|x| x.as_str() > l).collect(),
        None => all,
    };
    match n {
        Some(n) if rest.len() > n => Ok((rest.into_iter().take(n).collect(), Some(n), true)),
        n => Ok((rest, n, false)),
    }
}

fn with_link(
    mut r: http::Response<Body>,
    path: &str,
    n: Option<usize>,
    more: bool,
    items: &[String],
) -> http::Response<Body> {
    if let (true, Some(n), Some(last)) = (more, n, items.last()) {
        let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
        response::set(
            &mut r,
            "link",
            &format!("<{path}?n={n}&last={last}>; rel=\"next\""),
        );
    }
    r
}

pub async fn list(t: &Target<'_>, req: &Parts) -> ApiResult {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(method_not_allowed(&req.method));
    }
    let tags = t.repo().tags(&t.image).await?;
    let (tags, n, more) = page(tags, req)?;
    let name = t.client_name();
    let r = response::json(
        StatusCode::OK,
        &serde_json::json!({ "name": name, "tags": tags }),
    );
    Ok(with_link(
        r,
        &format!("/v2/{name}/tags/list"),
        n,
        more,
        &tags,
    ))
}

/// `GET /v2/_catalog`: a connector lists its repository's images; the main port lists every
/// repository's images, each prefixed with the repository name.
pub async fn catalog(
    reg: &Registry,
    listener: &Listener,
    req: &Parts,
    readable: &(dyn Fn(&crate::oci::RepoName) -> bool + Sync),
) -> ApiResult {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(method_not_allowed(&req.method));
    }
    let mut all = Vec::new();
    match listener {
        Listener::Connector(entry) => {
            if readable(entry.repo.name()) {
                all.extend(entry.repo.images().await?.iter().map(|i| i.to_string()));
            }
        }
        Listener::Main => {
            for (name, entry) in reg.repos.iter().filter(|(n, _)| readable(n)) {
                all.extend(
                    entry
                        .repo
                        .images()
                        .await?
                        .iter()
                        .map(|i| i.prefixed(name.as_str())),
                );
            }
        }
    }
    all.sort();
    let (repos, n, more) = page(all, req)?;
    let r = response::json(
        StatusCode::OK,
        &serde_json::json!({ "repositories": repos }),
    );
    Ok(with_link(r, "/v2/_catalog", n, more, &repos))
}
