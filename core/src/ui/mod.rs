//! The web UI, served by the core on the main port at the context path itself
//! (`http://host:8081/berth/`): browse repositories, images, tags and manifests (platforms,
//! layers, config, referrers, the exact pull lines), search; admins also see and create
//! repositories, users, cleanup previews and garbage collection runs.
//!
//! Server-rendered HTML from templates compiled into the binary (minijinja, autoescaped), one
//! stylesheet, no scripts and no external assets: it works on an air-gapped network and
//! needs no Node build. Reads go through the same [`Repository`](crate::repo::Repository)
//! calls and privilege checks as the registry API; changes through the same
//! [`Control`](crate::registry::Control) as the admin API.
//!
//! # Layout
//! - this file: routes, the viewer (session cookie), rendering, forms.
//! - `browse.rs`: repositories, images, tags, manifests, search; `overview.rs`: the figures
//!   the first pages show (usage against quota, image summaries, last runs, blocked remotes).
//! - `common.rs`: sizes, times, the browser's host, finding a readable repository.
//! - `content.rs`: deleting tags and manifests, restoring tags, for users with the privilege.
//! - `account.rs`: a user's own password and API tokens; an admin's password reset.
//! - `manage.rs`: the admin pages and their forms; `replication.rs`: its replication part;
//!   `signin.rs`: login, single sign-on and logout.

mod account;
mod browse;
mod common;
mod content;
mod manage;
mod overview;
mod replication;
mod signin;

use std::sync::OnceLock;

use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};

use crate::auth::{Action, Identity};
use crate::http::{response, Body};
use crate::oci::RepoName;
use crate::registry::Registry;

/// The session cookie's name.
const COOKIE: &str = "berth_session";
/// Form bodies are small.
const MAX_FORM: usize = 64 * 1024;

/// A UI page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Home,
    Style,
    Login,
    Logout,
    SignOn,
    SignOnDone,
    Repository,
    Image,
    Manifest,
    Search,
    Admin,
    AdminCreate,
    AdminGc,
    AdminCleanup,
    AdminPassword,
    AdminReplicate,
    Account,
    AccountPassword,
    AccountTokens,
    AccountRevoke,
    Delete,
    Restore,
}

/// The UI page `path` names, if any (the context path itself and `<context>/ui/...`).
pub fn route(reg: &Registry, path: &str) -> Option<Page> {
    let rest = path.strip_prefix(reg.context_path.as_str())?;
    Some(match rest {
        "" | "/" => Page::Home,
        "/ui/style.css" => Page::Style,
        "/ui/login" => Page::Login,
        "/ui/logout" => Page::Logout,
        "/ui/oidc/login" => Page::SignOn,
        "/ui/oidc/callback" => Page::SignOnDone,
        "/ui/repository" => Page::Repository,
        "/ui/image" => Page::Image,
        "/ui/manifest" => Page::Manifest,
        "/ui/search" => Page::Search,
        "/ui/admin" => Page::Admin,
        "/ui/admin/repositories" => Page::AdminCreate,
        "/ui/admin/gc" => Page::AdminGc,
        "/ui/admin/cleanup" => Page::AdminCleanup,
        "/ui/admin/password" => Page::AdminPassword,
        "/ui/admin/replication/run" => Page::AdminReplicate,
        "/ui/account" => Page::Account,
        "/ui/account/password" => Page::AccountPassword,
        "/ui/account/tokens" => Page::AccountTokens,
        "/ui/account/tokens/revoke" => Page::AccountRevoke,
        "/ui/delete" => Page::Delete,
        "/ui/restore" => Page::Restore,
        _ => return None,
    })
}

/// Who looks at the UI.
pub struct Viewer {
    /// `None` for anonymous.
    pub identity: Option<Identity>,
    /// Access control is on.
    pub auth: bool,
    pub admin: bool,
}

impl Viewer {
    /// The viewer of a request: the user of its session cookie, if that session is live
    /// (the cookie is read here, and nowhere else).
    async fn of(reg: &Registry, req: &Parts) -> Viewer {
        let Some(auth) = &reg.auth else {
            // No auth section: open access, as on the registry API (development).
            return Viewer {
                identity: None,
                auth: false,
                admin: true,
            };
        };
        let identity = match cookie(req, COOKIE) {
            Some(s) => auth.session_user(&s).await,
            None => None,
        };
        let admin = identity.as_ref().is_some_and(|i| auth.is_admin(i));
        Viewer {
            identity,
            auth: true,
            admin,
        }
    }

    /// Whether the viewer may read `repo`, as on the registry API.
    pub fn may_read(&self, reg: &Registry, repo: &RepoName) -> bool {
        self.may(reg, repo, Action::Read)
    }

    /// Whether the viewer may do `action` on `repo`, as on the registry API (no auth section:
    /// anything, as there).
    pub fn may(&self, reg: &Registry, repo: &RepoName, action: Action) -> bool {
        match &reg.auth {
            None => true,
            Some(auth) => {
                let who = self.identity.clone().unwrap_or(Identity::Anonymous);
                auth.can(&who, repo, action)
            }
        }
    }

    fn name(&self) -> Option<&str> {
        self.identity.as_ref().map(Identity::name)
    }

    /// The admin API's actor name for changes made from the UI.
    fn actor(&self) -> &str {
        self.name().unwrap_or("anonymous")
    }
}

/// What a page handler returns.
pub type PageResult = Result<Response<Body>, PageError>;

/// A page that cannot be shown: status and message, rendered in the layout.
#[derive(Debug)]
pub struct PageError {
    pub status: StatusCode,
    pub message: String,
}

impl PageError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        PageError {
            status,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        PageError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<crate::repo::RepoError> for PageError {
    fn from(e: crate::repo::RepoError) -> Self {
        if e.is_not_found() {
            return PageError::not_found(e.to_string());
        }
        tracing::error!(error = %e, "UI page failed");
        PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
    }
}

/// One request for the UI, with what every page needs.
pub struct Ctx<'a> {
    pub reg: &'a Registry,
    pub req: &'a Parts,
    pub viewer: Viewer,
    pub query: Vec<(String, String)>,
    /// `scheme://host[:port]` as the browser sees it.
    pub base: String,
    /// The client's address, for the login back-off.
    pub client: std::net::IpAddr,
}

impl Ctx<'_> {
    pub fn param(&self, key: &str) -> Option<&str> {
        crate::http::query_get(&self.query, key)
    }

    fn required(&self, key: &str) -> Result<&str, PageError> {
        self.param(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, format!("{key} is missing")))
    }

    /// Renders `template` in the layout with `data` plus what the layout needs.
    pub fn render(&self, template: &str, mut data: Value) -> PageResult {
        self.render_status(StatusCode::OK, template, &mut data)
    }

    fn render_status(&self, status: StatusCode, template: &str, data: &mut Value) -> PageResult {
        data["ctx"] = json!(self.reg.context_path);
        data["viewer"] = json!({
            "user": self.viewer.name(),
            "auth": self.viewer.auth,
            "admin": self.viewer.admin,
        });
        if data.get("message").is_none() {
            data["message"] = json!(self.param("message"));
        }
        let html = templates()
            .get_template(template)
            .and_then(|t| t.render(&*data))
            .map_err(|e| {
                tracing::error!(error = %e, template, "UI template failed");
                PageError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error (logged)")
            })?;
        Ok(html_response(status, html))
    }

    /// A redirect to a page of the UI (`path` under the context path).
    fn redirect(&self, path: &str) -> Response<Body> {
        let mut r = response::status(StatusCode::SEE_OTHER);
        let to = format!("{}{path}", self.reg.context_path);
        if let Ok(v) = HeaderValue::from_str(&to) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }

    /// A redirect to `path` that shows `message` there (what a form did).
    fn done(&self, path: &str, message: &str) -> Response<Body> {
        let sep = if path.contains('?') { '&' } else { '?' };
        self.redirect(&format!("{path}{sep}message={}", urlencode(message)))
    }

    /// The signed-in user's name; pages about one's own account need one.
    fn signed_in(&self) -> Result<&str, PageError> {
        match (&self.viewer.identity, self.viewer.auth) {
            (Some(Identity::User(name)), _) => Ok(name),
            (Some(Identity::External { .. }), _) => Err(PageError::new(
                StatusCode::FORBIDDEN,
                "your account lives in the directory: change its password there; API tokens \
                 are for local users",
            )),
            (_, false) => Err(PageError::new(
                StatusCode::NOT_FOUND,
                "access control is off (no auth section): there are no accounts",
            )),
            _ => Err(PageError::new(
                StatusCode::UNAUTHORIZED,
                "log in to manage your account",
            )),
        }
    }

    fn admin_only(&self) -> Result<(), PageError> {
        if self.viewer.admin {
            Ok(())
        } else {
            Err(PageError::new(
                StatusCode::FORBIDDEN,
                "this page is for administrators; log in as one",
            ))
        }
    }
}

fn html_response(status: StatusCode, html: String) -> Response<Body> {
    let mut r = Response::new(response::full(html));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing external is ever loaded, and no page may be framed.
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The templates, parsed once.
fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        for (name, text) in [
            ("base.html", include_str!("templates/base.html")),
            ("home.html", include_str!("templates/home.html")),
            ("repository.html", include_str!("templates/repository.html")),
            ("image.html", include_str!("templates/image.html")),
            ("manifest.html", include_str!("templates/manifest.html")),
            ("search.html", include_str!("templates/search.html")),
            ("login.html", include_str!("templates/login.html")),
            ("admin.html", include_str!("templates/admin.html")),
            ("report.html", include_str!("templates/report.html")),
            ("account.html", include_str!("templates/account.html")),
            ("token.html", include_str!("templates/token.html")),
        ] {
            if let Err(e) = env.add_template(name, text) {
                tracing::error!(template = name, error = %e, "UI template does not parse");
            }
        }
        env
    })
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn cookie(req: &Parts, name: &str) -> Option<String> {
    req.headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A urlencoded form body.
async fn form(body: Body) -> Result<Vec<(String, String)>, PageError> {
    let bytes: Bytes = Limited::new(body, MAX_FORM)
        .collect()
        .await
        .map_err(|e| PageError::new(StatusCode::BAD_REQUEST, format!("form: {e}")))?
        .to_bytes();
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// A form must come from the UI itself: browsers say where a request comes from, and a
/// request from another site is refused (with the SameSite=Strict cookie, the CSRF guard).
fn same_origin(req: &Parts) -> Result<(), PageError> {
    let site = req
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok());
    match site {
        None | Some("same-origin") | Some("none") => Ok(()),
        Some(other) => Err(PageError::new(
            StatusCode::FORBIDDEN,
            format!("a form from another site ({other}) is refused"),
        )),
    }
}

/// Serves a UI page.
pub async fn serve(
    reg: &Registry,
    page: Page,
    req: &Parts,
    body: Body,
    base: String,
    client: std::net::IpAddr,
) -> Response<Body> {
    let ctx = Ctx {
        reg,
        req,
        viewer: Viewer::of(reg, req).await,
        query: crate::http::query(req),
        base,
        client,
    };
    let post = req.method == Method::POST;
    if post {
        if let Err(e) = same_origin(req) {
            return error_page(&ctx, e);
        }
    }
    let result = match (page, post) {
        (Page::Style, _) => Ok(style()),
        (Page::Login, false) => signin::page(&ctx),
        (Page::SignOn, false) => signin::sign_on(&ctx).await,
        (Page::SignOnDone, false) => signin::sign_on_done(&ctx).await,
        (Page::Login, true) => signin::login(&ctx, body).await,
        (Page::Logout, _) => Ok(signin::logout(&ctx).await),
        (Page::Home, _) => browse::home(&ctx).await,
        (Page::Repository, _) => browse::repository(&ctx).await,
        (Page::Image, _) => browse::image(&ctx).await,
        (Page::Manifest, _) => browse::manifest(&ctx).await,
        (Page::Search, _) => browse::search(&ctx).await,
        (Page::Admin, _) => manage::admin(&ctx).await,
        (Page::AdminCreate, true) => manage::create(&ctx, body).await,
        (Page::AdminGc, true) => manage::gc(&ctx).await,
        (Page::AdminCleanup, true) => manage::cleanup(&ctx, body).await,
        (Page::AdminPassword, true) => account::reset(&ctx, body).await,
        (Page::AdminReplicate, true) => replication::run(&ctx, body).await,
        (Page::Account, _) => account::page(&ctx).await,
        (Page::AccountPassword, true) => account::password(&ctx, body).await,
        (Page::AccountTokens, true) => account::create_token(&ctx, body).await,
        (Page::AccountRevoke, true) => account::revoke_token(&ctx, body).await,
        (Page::Delete, true) => content::delete(&ctx, body).await,
        (Page::Restore, true) => content::restore(&ctx, body).await,
        (Page::SignOn | Page::SignOnDone, true) => Err(PageError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "single sign-on pages are links (GET)",
        )),
        (_, false) => Err(PageError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "this page takes a form (POST)",
        )),
    };
    result.unwrap_or_else(|e| error_page(&ctx, e))
}

fn error_page(ctx: &Ctx<'_>, e: PageError) -> Response<Body> {
    let mut data = json!({ "error": e.message });
    ctx.render_status(e.status, "report.html", &mut data)
        .unwrap_or_else(|_| response::status(e.status))
}

fn style() -> Response<Body> {
    let mut r = Response::new(response::full(include_str!("style.css")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    r
}
