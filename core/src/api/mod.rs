//! The registry API front-end: Distribution V2 (OCI Distribution Spec 1.1 plus Docker's
//! manifest types) and the V1 toggle, on connectors and on the main port. It serves what the
//! service layer ([`crate::registry`]) holds and shares only the HTTP helpers
//! ([`crate::http`]) with the admin API and the web UI.
//!
//! # Layout
//! - this file: the route table — per route, the handler, the action checked, and whether a
//!   success is audited and sent as an event.
//! - `route.rs` parses paths, `range.rs` the range headers, `target.rs` resolves a name to a
//!   repository (and a mirror), `access.rs` says who calls and what they may do (and serves
//!   the token realm), `notify.rs` turns successes into events.
//! - One file per spec area: `blobs.rs`, `uploads.rs`, `manifests.rs`, `tags.rs` (tags and
//!   catalog), `referrers.rs`, `v1.rs`.
//! - `error.rs`: the one place a meaning becomes a status and the spec's error body.
//!
//! Handlers see a [`Target`]: the repository, the image name inside it, and how to spell URLs
//! back to the client. They never see a file path, and they return [`ApiError`] which becomes
//! the spec's error body or a logged 500.

mod access;
mod blobs;
pub mod error;
mod manifests;
pub(crate) mod notify;
pub mod range;
mod referrers;
pub mod route;
mod tags;
mod target;
mod uploads;
mod v1;

use std::sync::Arc;

use http::request::Parts;
use http::{Method, Response, StatusCode};

use crate::auth::Action;
use crate::http::{query, query_get, response, Body, Conn};
use crate::oci::ErrorCode;
use crate::registry::{Registry, RepoEntry};
pub use error::ApiError;
use notify::Subject;
use route::Route;
pub use target::Target;

/// Which listener a request arrived on, resolved to the repository it serves.
#[derive(Clone)]
pub enum Listener {
    /// The main port: `/v2/<repository>/<image>/...`.
    Main,
    /// A repository's connector: `/v2/<image>/...`.
    Connector(Arc<RepoEntry>),
}

/// Handler results.
pub type ApiResult = Result<Response<Body>, ApiError>;

/// A spec error with the code's usual status: the API layer's one constructor.
pub fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

/// The authenticated caller of a request, with the access-control state; `None` without auth.
type CallerOf<'a> = Option<(&'a crate::auth::Auth, access::Caller)>;

/// Serves one registry-API request: the realm, or a route for the caller behind it.
pub async fn serve(
    reg: &Registry,
    listener: &Listener,
    conn: Conn,
    req: &Parts,
    body: Body,
    base: String,
) -> ApiResult {
    let path = req.uri.path();
    let caller = match &reg.auth {
        Some(auth) if path == "/v2/token" => {
            return access::token(reg, auth, listener, conn, req, &base).await;
        }
        Some(auth) => {
            let client = access::client_ip(reg, conn, req);
            Some((
                auth.as_ref(),
                access::identify(auth, client, req, &base).await?,
            ))
        }
        None => None,
    };
    let route = route::parse(path);
    let allowed = route.methods();
    if !allowed.contains(&req.method.as_str()) {
        return Err(method_not_allowed(&req.method).with_header("allow", allowed.join(", ")));
    }
    let call = Call {
        reg,
        listener,
        conn,
        req,
        caller,
        base,
    };
    call.route(route, body).await
}

/// One request on its way through the route table.
struct Call<'a> {
    reg: &'a Registry,
    listener: &'a Listener,
    conn: Conn,
    req: &'a Parts,
    caller: CallerOf<'a>,
    base: String,
}

/// What the table says of a repository route: the action checked before its handler runs,
/// whether a success writes an audit line (a manifest push or tag move, a delete), and what a
/// success is an event about.
struct Rule<'r> {
    action: Action,
    audited: Option<&'r str>,
    event: Option<Subject<'r>>,
}

/// The route table for the routes about one repository: `(name, rule)`; `None` for the rest.
fn rule<'r>(route: &Route<'r>, method: &Method) -> Option<(&'r str, Rule<'r>)> {
    let by_method = access::action_of(method);
    let rule = |action, audited, event| Rule {
        action,
        audited,
        event,
    };
    Some(match *route {
        Route::Tags { name } => (name, rule(Action::Read, None, None)),
        Route::Referrers { name, .. } => (name, rule(Action::Read, None, None)),
        Route::Manifest { name, reference } => (
            name,
            rule(
                by_method,
                Some(reference),
                Some(Subject::Manifest(reference)),
            ),
        ),
        Route::Blob { name, digest } => (
            name,
            rule(by_method, Some(digest), Some(Subject::Blob(digest))),
        ),
        Route::UploadStart { name } | Route::Upload { name, .. } => {
            (name, rule(Action::Write, None, Some(Subject::Upload)))
        }
        _ => return None,
    })
}

impl Call<'_> {
    fn actor(&self) -> &str {
        self.caller
            .as_ref()
            .map_or("anonymous", |(_, c)| c.identity.name())
    }

    /// Serves a V1/V2 route once the method is known to fit it.
    async fn route(&self, route: Route<'_>, body: Body) -> ApiResult {
        let Some((name, rule)) = rule(&route, &self.req.method) else {
            return self.unscoped(route).await;
        };
        let t = self.reg.target(
            self.listener,
            name,
            self.base.clone(),
            self.actor(),
            self.req,
        )?;
        if let Some((auth, c)) = &self.caller {
            access::authorize(auth, c, &t, rule.action)?;
        }
        let req = self.req;
        let r = match route {
            Route::Tags { .. } => tags::list(&t, req).await,
            Route::Referrers { digest, .. } => referrers::list(&t, digest, req).await,
            Route::Manifest { reference, .. } => manifests::handle(&t, reference, req, body).await,
            Route::Blob { digest, .. } => blobs::handle(&t, digest, req).await,
            Route::UploadStart { .. } => {
                let who = access::client_key(self.reg, &self.caller, self.conn, req);
                uploads::start(&t, req, body, &who).await
            }
            Route::Upload { id, .. } => uploads::session(&t, id, req, body).await,
            _ => unreachable_route(req),
        };
        if let Some(what) = rule.audited {
            self.audit(&t, what, &r);
        }
        if let Some(subject) = rule.event {
            self.reg.notify(self.conn, req, &t, subject, &r);
        }
        r
    }

    /// The routes about no one repository: base, catalog, V1, and paths that are none.
    async fn unscoped(&self, route: Route<'_>) -> ApiResult {
        let (caller, base) = (&self.caller, &self.base);
        match route {
            Route::Base => {
                access::signed_in(caller, base)?;
                Ok(response::json(StatusCode::OK, &serde_json::json!({})))
            }
            Route::Catalog => {
                access::signed_in(caller, base)?;
                let may_read = |name: &_| access::may_read(caller, name);
                tags::catalog(self.reg, self.listener, self.req, &may_read).await
            }
            Route::V1Ping | Route::V1Search | Route::V1Other => {
                access::may_search(caller, self.listener, &route, base)?;
                v1::handle(self.reg, self.listener, route, self.req).await
            }
            _ => Err(err(
                ErrorCode::NameInvalid,
                format!("no registry endpoint at {}", self.req.uri.path()),
            )
            .with_status(StatusCode::NOT_FOUND)),
        }
    }

    /// One audit line for every change: pushed manifests (tag moves) and deletes.
    fn audit(&self, t: &Target, what: &str, r: &ApiResult) {
        let changed = matches!(self.req.method, Method::PUT | Method::DELETE);
        let ok = r.as_ref().is_ok_and(|resp| resp.status().is_success());
        if !(changed && ok) {
            return;
        }
        let who = self
            .caller
            .as_ref()
            .map_or("anonymous (no auth configured)", |(_, c)| c.identity.name());
        crate::registry::audit::content(
            who,
            access::client_ip(self.reg, self.conn, self.req),
            self.req.method.as_str(),
            t.entry.repo.name().as_str(),
            t.image.as_str(),
            what,
        );
    }
}

/// A repository route the table has no handler for: cannot happen (`rule` lists exactly the
/// routes `route` handles), answered as a 404 rather than a panic.
fn unreachable_route(req: &Parts) -> ApiResult {
    Err(err(
        ErrorCode::NameInvalid,
        format!("no registry endpoint at {}", req.uri.path()),
    )
    .with_status(StatusCode::NOT_FOUND))
}

/// `405 UNSUPPORTED` for a method an endpoint does not take (501 for one HTTP does not know).
pub fn method_not_allowed(method: &Method) -> ApiError {
    if !route::known_method(method) {
        return err(
            ErrorCode::Unsupported,
            format!("method {method} is not implemented"),
        )
        .with_status(StatusCode::NOT_IMPLEMENTED);
    }
    err(
        ErrorCode::Unsupported,
        format!("method {method} is not supported here"),
    )
}

/// What every request must carry before it is routed: RFC 9112 requires `Host` in HTTP/1.1
/// (a request without one is a 400, not served), and an unknown method is 501.
pub fn check_request_line(req: &Parts) -> Result<(), ApiError> {
    if req.version == http::Version::HTTP_11 && !req.headers.contains_key(http::header::HOST) {
        return Err(err(
            ErrorCode::Unsupported,
            "HTTP/1.1 requests need a Host header",
        )
        .with_status(StatusCode::BAD_REQUEST));
    }
    if !route::known_method(&req.method) {
        return Err(method_not_allowed(&req.method));
    }
    Ok(())
}
