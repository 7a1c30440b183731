//! The short table from (port, path) to a front-end, and what every request gets whichever
//! front-end serves it: an id, a tracing span that logs its outcome, metrics, the checks of the
//! request line, a body that may not stall, and the registry API's version header.
//!
//! - the metrics listener: the probes only;
//! - the main port: the probes, then the web UI and the admin API under the context path, then
//!   the registry API (`/v2/<repository>/<image>/...`);
//! - a connector: `/readyz` and `/healthz` (what the edge's health checks ask), then the
//!   registry API for its repository (`/v2/<image>/...`), resolved per request so a repository
//!   changed at run time is served as it is now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tracing::Instrument;

use super::observe;
use super::port::Port;
use crate::api::{self, ApiError, Listener};
use crate::http::{client_ip, response, url, Body, Conn};
use crate::oci::ErrorCode;
use crate::registry::Registry;

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// Serves one request, inside a tracing span that logs its outcome.
pub async fn handle(
    reg: &Registry,
    port: &Port,
    mut conn: Conn,
    req: Request<Body>,
) -> Response<Body> {
    conn.request = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:x}", conn.request);
    // At WARN, so that it is on whatever RUST_LOG says: every warning, failed login and audit
    // line inside names the request and its TCP peer (the edge, or whoever set the
    // X-Forwarded-For that `client`/`from` show).
    let span = tracing::warn_span!(
        "request",
        id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        peer = %conn.peer,
    );
    let started = Instant::now();
    async move {
        let v1 = req.uri().path().starts_with("/v1");
        let labels = observe::labels(reg, port, req.uri().path());
        let method = observe::method_label(req.method());
        let bytes_in = observe::length(req.headers());
        // A HEAD answer states the length of a body it does not send.
        let head = req.method() == Method::HEAD;
        let mut resp = route(reg, port, conn, req, &id).await;
        let bytes_out = if head {
            0
        } else {
            observe::length(resp.headers())
        };
        let sizes = (bytes_in, bytes_out);
        let status = resp.status().as_u16();
        crate::metrics::global().request(labels, method, status, started.elapsed(), sizes);
        if !v1 {
            resp.headers_mut().insert(
                response::API_VERSION,
                HeaderValue::from_static("registry/2.0"),
            );
        }
        tracing::info!(
            status,
            ms = started.elapsed().as_secs_f64() * 1000.0,
            "done"
        );
        resp
    }
    .instrument(span)
    .await
}

/// The front-end a request goes to.
async fn route(
    reg: &Registry,
    port: &Port,
    conn: Conn,
    req: Request<Body>,
    id: &str,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    if let Err(e) = api::check_request_line(&parts) {
        return e.into_response(id);
    }
    let body = guard(reg, &parts, body);
    url::warn_untrusted_forwarding(&parts.headers, conn, &reg.trusted_proxies);
    let base = || url::external_base(&parts.headers, conn, &reg.trusted_proxies);
    let (listener, body) = match port {
        Port::Metrics => {
            let r = observe::probe(reg, &parts, true).await;
            return r.unwrap_or_else(|| response::status(StatusCode::NOT_FOUND));
        }
        Port::Main => match main_port(reg, conn, &parts, body, &base(), id).await {
            Ok(r) => return r,
            Err(body) => (Listener::Main, body),
        },
        // `/readyz` and `/healthz` are outside `/v2/`: no image name can reach them. The edge's
        // health checks ask here, so a core that lost its database leaves the pool.
        Port::Connector(_) if matches!(parts.uri.path(), "/readyz" | "/healthz") => {
            let r = observe::probe(reg, &parts, false).await;
            return r.unwrap_or_else(|| response::status(StatusCode::NOT_FOUND));
        }
        Port::Connector(name) => match reg.repos().get(name) {
            Some(entry) => (Listener::Connector(entry.clone()), body),
            None => {
                let e = ApiError::new(ErrorCode::NameUnknown, "this repository has been deleted")
                    .with_status(StatusCode::NOT_FOUND);
                return e.into_response(id);
            }
        },
    };
    api::serve(reg, &listener, conn, &parts, body, base())
        .await
        .unwrap_or_else(|e| e.into_response(id))
}

/// The main port's own front-ends: the probes, the web UI, the admin API; the body back if
/// the request is for none of them (it is the registry API's).
async fn main_port(
    reg: &Registry,
    conn: Conn,
    parts: &Parts,
    body: Body,
    base: &str,
    id: &str,
) -> Result<Response<Body>, Body> {
    if let Some(r) = observe::probe(reg, parts, false).await {
        return Ok(r);
    }
    let path = parts.uri.path();
    let client = client_ip(&reg.trusted_proxies, conn, parts);
    if let Some(page) = crate::ui::route(reg, path) {
        return Ok(crate::ui::serve(reg, page, parts, body, base.to_owned(), client).await);
    }
    if let Some(route) = crate::admin::route(reg, path, &parts.method) {
        let call = crate::admin::Call {
            req: parts,
            client,
            base,
            request_id: id,
        };
        return Ok(crate::admin::handle(reg, route, call, body).await);
    }
    Err(body)
}

/// A request body that stalls for longer than `body_idle_timeout` ends (slowloris bodies);
/// GET and HEAD carry none worth guarding.
fn guard(reg: &Registry, parts: &Parts, body: Body) -> Body {
    if parts.method == Method::GET || parts.method == Method::HEAD {
        return body;
    }
    response::idle_timeout(body, reg.body_idle_timeout)
}
