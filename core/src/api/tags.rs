//! `GET /v2/<name>/tags/list` and `GET /v2/_catalog`, both paged with `n` and `last` and a
//! `Link: <...>; rel="next"` header while more remain. A page holds at most [`MAX_PAGE`]
//! entries, also when `n` is absent or larger (the spec lets a registry return fewer than `n`
//! with a `Link`): a repository of a million tags is never one response.

use http::request::Parts;
use http::{Method, StatusCode};

use super::response::{self, Body};
use super::{err, ApiError};
use super::{method_not_allowed, query, query_get, ApiResult, Listener, Registry, Target};
use crate::oci::ErrorCode;
use crate::repo::Page;

/// The most entries a page holds (Distribution's default too).
pub const MAX_PAGE: usize = 1000;

/// The page a request asks for (`n`, `last`), and the store page that answers it: one entry
/// more than asked, to know whether a next page exists without counting the rest.
fn requested(req: &Parts) -> Result<(Option<usize>, Page), ApiError> {
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
    let n = Some(n.unwrap_or(MAX_PAGE).min(MAX_PAGE));
    let page = Page {
        after: query_get(&q, "last")
            .filter(|l| !l.is_empty())
            .map(str::to_owned),
        limit: n.map(|n| n.saturating_add(1)),
    };
    Ok((n, page))
}

/// Cuts the one extra entry off; says whether more remain.
fn cut(mut items: Vec<String>, n: Option<usize>) -> (Vec<String>, bool) {
    match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            (items, true)
        }
        _ => (items, false),
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

pub async fn list(t: &Target, req: &Parts) -> ApiResult {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(method_not_allowed(&req.method));
    }
    let (n, page) = requested(req)?;
    let (tags, more) = cut(t.repo().tags(&t.image, &page).await?, n);
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
    let (n, page) = requested(req)?;
    let mut all = Vec::new();
    match listener {
        Listener::Connector(entry) => {
            if readable(entry.repo.name()) {
                let images = entry.repo.images(&page).await?;
                all.extend(images.iter().map(|i| i.to_string()));
            }
        }
        Listener::Main => {
            let repos = reg.repos();
            for (name, entry) in repos.iter().filter(|(n, _)| readable(n)) {
                // Names are `<repository>/<image>`: translate `last` into this repository.
                let Some(own) = repo_page(name.as_str(), &page) else {
                    continue;
                };
                let images = entry.repo.images(&own).await?;
                all.extend(images.iter().map(|i| i.prefixed(name.as_str())));
            }
            // Each repository gave at most a page after `last`: merged, cut to a page.
            all.sort();
            all.truncate(page.limit.unwrap_or(usize::MAX));
        }
    }
    let (repos, more) = cut(all, n);
    let r = response::json(
        StatusCode::OK,
        &serde_json::json!({ "repositories": repos }),
    );
    Ok(with_link(r, "/v2/_catalog", n, more, &repos))
}

/// The page of repository `repo` whose `repo/<image>` names follow the catalog's `last`;
/// `None` when every name of it sorts before `last`.
fn repo_page(repo: &str, page: &Page) -> Option<Page> {
    let prefix = format!("{repo}/");
    let after = match page.after.as_deref() {
        None => None,
        Some(last) if last.starts_with(&prefix) => Some(last[prefix.len()..].to_owned()),
        Some(last) if last < prefix.as_str() => None,
        Some(_) => return None,
    };
    Some(Page {
        after,
        limit: page.limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_pages_translate_into_each_repository() {
        let page = |after: &str| Page {
            after: Some(after.to_owned()),
            limit: Some(3),
        };
        assert_eq!(
            repo_page("hosted", &page("hosted/team/app"))
                .unwrap()
                .after
                .as_deref(),
            Some("team/app")
        );
        assert_eq!(
            repo_page("hosted", &page("alpha/x")).unwrap().after,
            None,
            "all of hosted follows"
        );
        assert!(
            repo_page("alpha", &page("hosted/x")).is_none(),
            "all of alpha precedes"
        );
        // "a-b/" sorts before "a/": a repository whose names all precede `last` is skipped.
        assert!(repo_page("a-b", &page("a/x")).is_none());
        assert_eq!(repo_page("a", &page("a-b/x")).unwrap().after, None);
    }
}
