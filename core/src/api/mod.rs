//! The HTTP API: Distribution V2 (OCI Distribution Spec 1.1 plus Docker's manifest types), the
//! V1 toggle, and the main port's health and admin endpoints.
//!
//! # Layout
//! - `route.rs` parses paths, `range.rs` the range headers, `url.rs` the external base URL,
//!   `target.rs` resolves a name to a repository (and a mirror), `observe.rs` feeds metrics.
//! - One file per spec area: `blobs.rs`, `uploads.rs`, `manifests.rs`, `tags.rs` (tags and
//!   catalog), `referrers.rs`, `v1.rs`; `admin.rs` for the main port's own endpoints.
//! - `response.rs` builds bodies and the spec's error format.
//!
//! Handlers see a [`Target`]: the repository, the image name inside it, and how to spell URLs
//! back to the client. They never see a file path, and they return [`ApiError`] which becomes
//! the spec's error body or a logged 500.

mod access;
mod admin;
mod blobs;
mod cidr;
pub mod error;
mod manifests;
pub(crate) mod notify;
mod observe;
pub mod range;
mod referrers;
pub mod response;
pub mod route;
mod tags;
mod target;
mod uploads;
pub mod url;
mod v1;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use tracing::Instrument;

use crate::oci::{ErrorCode, RepoName};
use crate::repo::Repository;
pub use cidr::Cidr;
pub use error::ApiError;
use notify::Subject;
pub use response::Body;
use route::Route;
pub use target::Target;

/// A repository as the API layer sees it.
pub struct RepoEntry {
    pub repo: Arc<dyn Repository>,
    pub v1_enabled: bool,
    /// Where writes land, for privilege checks: the repository itself if hosted, a group's
    /// writable member, `None` for a proxy.
    pub write_repo: Option<RepoName>,
    /// Mirror mode (groups): the repository serving each upstream named in `?ns=`.
    pub mirrors: BTreeMap<String, RepoName>,
    /// The settings it was built from.
    pub config: crate::config::RepoConfig,
}

/// The repositories served, by name; replaced whole when one changes at run time.
pub type RepoMap = BTreeMap<RepoName, Arc<RepoEntry>>;

/// Everything the API layer serves.
pub struct Registry {
    pub(crate) repos: std::sync::RwLock<Arc<RepoMap>>,
    pub context_path: String,
    pub trusted_proxies: Vec<Cidr>,
    /// A request body that stalls this long is abandoned (slowloris bodies).
    pub body_idle_timeout: std::time::Duration,
    /// Access control; `None` is open access (a config without `auth`).
    pub auth: Option<Arc<crate::auth::Auth>>,
    /// Garbage collection, undo, usage.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Changes at run time: repositories, users, roles, tokens.
    pub control: Arc<crate::server::Control>,
    /// Push, pull and delete events for the configured webhooks.
    pub events: Arc<crate::events::Notifier>,
}

/// Which socket a request arrived on.
#[derive(Clone)]
pub enum Port {
    Main,
    /// The metrics listener: `/metrics`, `/healthz`, `/readyz` only.
    Metrics,
    /// A repository's connector, resolved to the repository's current entry per request.
    Connector(RepoName),
}

/// Which listener a request arrived on, resolved to the repository it serves.
#[derive(Clone)]
pub enum Listener {
    /// The metrics listener.
    Metrics,
    /// The main port: `/v2/<repository>/<image>/...` plus admin endpoints.
    Main,
    /// A repository's connector: `/v2/<image>/...`.
    Connector(Arc<RepoEntry>),
}

/// Connection facts a handler needs.
#[derive(Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Whether the connection is direct HTTPS (a connector with `https`).
    pub tls: bool,
    /// The request's id (set by [`Registry::handle`]), for logs and events.
    pub request: u64,
}

/// Handler results.
pub type ApiResult = Result<Response<Body>, ApiError>;

/// A spec error with the code's usual status: the API layer's one constructor.
pub fn err(code: ErrorCode, message: impl Into<String>) -> ApiError {
    ApiError::new(code, message)
}

static REQUEST_IDS: AtomicU64 = AtomicU64::new(1);

/// The authenticated caller of a request, with the access-control state; `None` without auth.
type CallerOf<'a> = Option<(&'a crate::auth::Auth, access::Caller)>;

impl Registry {
    /// Serves one request, inside a tracing span that logs its outcome.
    pub async fn handle(&self, port: &Port, mut conn: Conn, req: Request<Body>) -> Response<Body> {
        conn.request = REQUEST_IDS.fetch_add(1, Ordering::Relaxed);
        let id = format!("{:x}", conn.request);
        let span = tracing::info_span!(
            "request",
            id = %id,
            method = %req.method(),
            path = %req.uri().path(),
            peer = %conn.peer,
        );
        let started = Instant::now();
        async move {
            let v1 = req.uri().path().starts_with("/v1");
            let labels = observe::labels(self, port, req.uri().path());
            let method = observe::method_label(req.method());
            let bytes_in = observe::length(req.headers());
            let outcome = match self.listener(port) {
                Some(listener) => self.dispatch(&listener, conn, req).await,
                None => Err(
                    err(ErrorCode::NameUnknown, "this repository has been deleted")
                        .with_status(StatusCode::NOT_FOUND),
                ),
            };
            let mut resp = outcome.unwrap_or_else(|e| error_response(e, &id));
            let sizes = (bytes_in, observe::length(resp.headers()));
            let status = resp.status().as_u16();
            crate::metrics::global().request(labels, method, status, started.elapsed(), sizes);
            if !v1 {
                resp.headers_mut().insert(
                    response::API_VERSION,
                    HeaderValue::from_static("registry/2.0"),
                );
            }
            tracing::info!(
                status = resp.status().as_u16(),
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "done"
            );
            resp
        }
        .instrument(span)
        .await
    }

    /// The repositories served now.
    pub fn repos(&self) -> Arc<RepoMap> {
        self.repos
            .read()
            .map_or_else(|p| p.into_inner().clone(), |r| r.clone())
    }

    /// Serves `repos` from now on (requests in flight finish with what they resolved).
    pub fn install(&self, repos: RepoMap) {
        let mut r = self.repos.write().unwrap_or_else(|p| p.into_inner());
        *r = Arc::new(repos);
    }

    /// What a port serves now; a connector whose repository is gone serves nothing (its socket
    /// is being closed).
    fn listener(&self, port: &Port) -> Option<Listener> {
        match port {
            Port::Main => Some(Listener::Main),
            Port::Metrics => Some(Listener::Metrics),
            Port::Connector(name) => self.repos().get(name).cloned().map(Listener::Connector),
        }
    }

    async fn dispatch(&self, listener: &Listener, conn: Conn, req: Request<Body>) -> ApiResult {
        let (parts, body) = req.into_parts();
        let req = &parts;
        check_request_line(req)?;
        let path = req.uri.path().to_owned();
        url::warn_untrusted_forwarding(&req.headers, conn, &self.trusted_proxies);
        let base = || url::external_base(&req.headers, conn, &self.trusted_proxies);
        // Without an auth section everyone may do everything (development).
        match listener {
            Listener::Metrics => {
                let r = observe::probe(self, req, true).await;
                return Ok(r.unwrap_or_else(|| response::status(StatusCode::NOT_FOUND)));
            }
            Listener::Main => {
                if let Some(r) = observe::probe(self, req, false).await {
                    return Ok(r);
                }
            }
            Listener::Connector(_) => {}
        }
        if let (Listener::Main, Some(page)) = (listener, crate::ui::route(self, &path)) {
            let client = access::client_ip(self, conn, req);
            let body = self.guard(body);
            return Ok(crate::ui::serve(self, page, req, body, base(), client).await);
        }
        let caller = match &self.auth {
            Some(auth) if path == "/v2/token" => {
                return access::token(self, auth, listener, conn, req, &base()).await;
            }
            Some(auth) => {
                let client = access::client_ip(self, conn, req);
                Some((
                    auth.as_ref(),
                    access::identify(auth, client, req, &base()).await?,
                ))
            }
            None => None,
        };
        if let Listener::Main = listener {
            if let Some(route) = admin::route(self, &path, &req.method) {
                return self.admin(&caller, route, req, body, &base()).await;
            }
        }
        let route = route::parse(&path);
        let allowed = route.methods();
        if !allowed.contains(&req.method.as_str()) {
            return Err(method_not_allowed(&req.method).with_header("allow", allowed.join(", ")));
        }
        self.route(listener, conn, req, body, route, &caller, base())
            .await
    }

    /// The main port's own endpoints (health open, the admin API for admins only): Basic with
    /// an admin's password or an API token given the admin privilege, never a registry token;
    /// writes only as JSON and never from another site.
    async fn admin(
        &self,
        caller: &CallerOf<'_>,
        route: admin::AdminRoute,
        req: &Parts,
        body: Body,
        base: &str,
    ) -> ApiResult {
        if !route.protected() {
            return admin::serve(self, route, req, self.guard(body), "anonymous").await;
        }
        admin::forgery_guard(req, base)?;
        if let Some((auth, c)) = caller {
            let refuse = |message: &str| {
                err(ErrorCode::Unauthorized, message).with_header(
                    "www-authenticate",
                    format!("Basic realm=\"{}\"", access::SERVICE),
                )
            };
            if c.claims.is_some() {
                return Err(refuse(
                    "the admin API takes Basic credentials (an admin's password, or an API \
                     token given the admin privilege), not a registry token",
                ));
            }
            if !auth.is_admin(&c.identity) {
                return Err(refuse(
                    "the admin API needs an admin user (an API token needs the admin privilege \
                     on * itself)",
                ));
            }
        }
        let actor = caller
            .as_ref()
            .map_or("anonymous", |(_, c)| c.identity.name());
        admin::serve(self, route, req, self.guard(body), actor).await
    }

    /// Serves a V1/V2 route once the method is known to fit it.
    #[allow(clippy::too_many_arguments)]
    async fn route(
        &self,
        listener: &Listener,
        conn: Conn,
        req: &Parts,
        body: Body,
        route: Route<'_>,
        caller: &CallerOf<'_>,
        base: String,
    ) -> ApiResult {
        use crate::auth::Action;
        let actor = caller
            .as_ref()
            .map_or("anonymous", |(_, c)| c.identity.name());
        let check = |t: &Target, action| match caller {
            Some((auth, c)) => access::authorize(auth, c, t, action),
            None => Ok(()),
        };
        match route {
            Route::Base => {
                access::signed_in(caller, &base)?;
                Ok(response::json(StatusCode::OK, &serde_json::json!({})))
            }
            Route::Catalog => {
                access::signed_in(caller, &base)?;
                tags::catalog(self, listener, req, &|name| access::may_read(caller, name)).await
            }
            Route::V1Ping | Route::V1Search | Route::V1Other => {
                access::may_search(caller, listener, &route, &base)?;
                v1::handle(self, listener, route, req).await
            }
            Route::NotRegistry | Route::V2Unknown => Err(err(
                ErrorCode::NameInvalid,
                format!("no registry endpoint at {}", req.uri.path()),
            )
            .with_status(StatusCode::NOT_FOUND)),
            Route::Tags { name } => {
                let t = self.target(listener, name, base, actor, req)?;
                check(&t, Action::Read)?;
                tags::list(&t, req).await
            }
            Route::Manifest { name, reference } => {
                let t = self.target(listener, name, base, actor, req)?;
                check(&t, access::action_of(&req.method))?;
                let r = manifests::handle(&t, reference, req, self.guard(body)).await;
                self.audit(caller, conn, req, &t, reference, &r);
                self.notify(conn, req, &t, Subject::Manifest(reference), &r);
                r
            }
            Route::Blob { name, digest } => {
                let t = self.target(listener, name, base, actor, req)?;
                check(&t, access::action_of(&req.method))?;
                let r = blobs::handle(&t, digest, req).await;
                self.audit(caller, conn, req, &t, digest, &r);
                self.notify(conn, req, &t, Subject::Blob(digest), &r);
                r
            }
            Route::UploadStart { name } => {
                let t = self.target(listener, name, base, actor, req)?;
                check(&t, Action::Write)?;
                let who = access::client_key(self, caller, conn, req);
                let r = uploads::start(&t, req, self.guard(body), &who).await;
                self.notify(conn, req, &t, Subject::Upload, &r);
                r
            }
            Route::Upload { name, id } => {
                let t = self.target(listener, name, base, actor, req)?;
                check(&t, Action::Write)?;
                let r = uploads::session(&t, id, req, self.guard(body)).await;
                self.notify(conn, req, &t, Subject::Upload, &r);
                r
            }
            Route::Referrers { name, digest } => {
                let t = self.target(listener, name, base, actor, req)?;
                check(&t, Action::Read)?;
                referrers::list(&t, digest, req).await
            }
        }
    }

    /// One audit line for every change: pushed manifests (tag moves) and deletes.
    fn audit(
        &self,
        caller: &CallerOf<'_>,
        conn: Conn,
        req: &Parts,
        t: &Target,
        what: &str,
        r: &ApiResult,
    ) {
        let changed = matches!(req.method, http::Method::PUT | http::Method::DELETE);
        let ok = r.as_ref().is_ok_and(|resp| resp.status().is_success());
        if !(changed && ok) {
            return;
        }
        let who = caller
            .as_ref()
            .map_or("anonymous (no auth configured)", |(_, c)| c.identity.name());
        tracing::info!(
            target: "berth_core::audit",
            who,
            from = %access::client_ip(self, conn, req),
            action = %req.method,
            repository = %t.entry.repo.name(),
            image = %t.image,
            reference = what,
            "audit"
        );
    }

    /// Ends a request body that stalls for longer than `body_idle_timeout`.
    fn guard(&self, body: Body) -> Body {
        response::idle_timeout(body, self.body_idle_timeout)
    }
}

/// Parses a query string into pairs (percent-decoded).
pub fn query(req: &Parts) -> Vec<(String, String)> {
    req.uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
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
fn check_request_line(req: &Parts) -> Result<(), ApiError> {
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

/// The response for a failed request; internal failures are logged with the request id.
fn error_response(e: ApiError, id: &str) -> Response<Body> {
    match e {
        ApiError::Client {
            error,
            status,
            headers,
        } => response::error(&error, status, &headers),
        ApiError::Internal(e) => {
            tracing::error!(error = %e, "internal error");
            response::internal(id)
        }
        ApiError::Remote(message) => {
            tracing::warn!(error = %message, "remote failure");
            response::bad_gateway(&message)
        }
    }
}
