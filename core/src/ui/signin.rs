//! Signing in and out of the web UI: a password (local or directory), or a single sign-on at
//! the OpenID Connect provider, opens a session row in the metadata store and sets its
//! cookie; logout removes the row on every core and clears the cookie. Kept apart from the
//! page plumbing in `mod.rs`.
//!
//! A sign-on leaves for the provider with a pending cookie (state, nonce, PKCE verifier;
//! `SameSite=Lax`, the provider's redirect back is a cross-site navigation) and comes back to
//! `<context>/ui/oidc/callback`, on whichever core. The session cookie is `SameSite=Strict`, so
//! the callback answers with a page that moves on by itself: a same-site navigation, which
//! carries the new cookie.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::{cookie, form, Ctx, PageError, PageResult, COOKIE};
use crate::auth::oidc::OidcError;
use crate::auth::{Identity, UserSource};
use crate::http::Body;

/// The pending sign-on's cookie.
const PENDING: &str = "berth_oidc";
/// How long a sign-on at the provider may take.
const PENDING_TTL_S: u64 = 600;

/// The login form, with a single sign-on button when a provider is configured.
pub(super) fn page(ctx: &Ctx<'_>) -> PageResult {
    let sso = ctx
        .reg
        .auth
        .as_ref()
        .and_then(|a| a.web_sign_on())
        .map(|w| w.issuer().to_owned());
    ctx.render("login.html", json!({ "sso": sso }))
}

/// Checks the form's password and, if it passes, opens a session.
pub(super) async fn login(ctx: &Ctx<'_>, body: Body) -> PageResult {
    let Some(auth) = &ctx.reg.auth else {
        return Ok(ctx.redirect("/"));
    };
    let f = form(body).await?;
    let get = |k: &str| crate::http::query_get(&f, k).unwrap_or_default().to_owned();
    let (user, password) = (get("user"), get("password"));
    // Fresh: a directory user's groups are read again at every sign-in.
    match auth.login_fresh(&user, &password, ctx.client).await {
        // A CI job's ID token typed into the form: it is for clients, and a session would
        // outlive it.
        Ok(Identity::External {
            source: UserSource::Oidc,
            ..
        }) => Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            "ID tokens are for clients; people sign in with single sign-on",
        )),
        Ok(who @ (Identity::User(_) | Identity::External { .. })) => {
            let mut r = ctx.redirect("/");
            start_session(ctx, &who, &mut r).await?;
            Ok(r)
        }
        Ok(_) => Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            "API tokens are for clients; log in with your password",
        )),
        Err(e) => {
            let status = match e {
                crate::auth::LoginError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                crate::auth::LoginError::TooMany(_) | crate::auth::LoginError::Busy => {
                    StatusCode::TOO_MANY_REQUESTS
                }
                crate::auth::LoginError::Invalid => StatusCode::UNAUTHORIZED,
            };
            let mut data = json!({ "error": e.to_string() });
            ctx.render_status(status, "login.html", &mut data)
        }
    }
}

/// Opens a session for `who` and sets its cookie on `r`.
async fn start_session(
    ctx: &Ctx<'_>,
    who: &Identity,
    r: &mut Response<Body>,
) -> Result<(), PageError> {
    let Some(auth) = &ctx.reg.auth else {
        return Ok(());
    };
    let session = auth.open_session(who).await.map_err(|e| {
        tracing::error!(error = %e, "storing a UI session failed");
        PageError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot sign in right now")
    })?;
    let ttl = match who {
        Identity::External { .. } => crate::auth::DIRECTORY_SESSION_TTL,
        _ => crate::auth::SESSION_TTL,
    };
    let c = format!(
        "{COOKIE}={session}; Path={}/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ctx.reg.context_path,
        ttl.as_secs(),
        secure(ctx)
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    let name = who.name();
    tracing::info!(target: "berth_core::audit", who = %name, action = "ui login", "audit");
    Ok(())
}

fn secure(ctx: &Ctx<'_>) -> &'static str {
    if ctx.base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    }
}

/// Where the provider sends the browser back to: this UI as the browser sees it.
fn callback_url(ctx: &Ctx<'_>) -> String {
    format!("{}{}/ui/oidc/callback", ctx.base, ctx.reg.context_path)
}

fn sign_on_failed(e: OidcError) -> PageError {
    match e {
        OidcError::Unavailable(why) => {
            tracing::warn!(reason = %why, "single sign-on: provider unavailable");
            PageError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the identity provider is unavailable; try again shortly",
            )
        }
        OidcError::Refused(why) => {
            tracing::warn!(reason = %why, "single sign-on refused");
            PageError::new(StatusCode::UNAUTHORIZED, format!("sign-on refused: {why}"))
        }
    }
}

/// Leaves for the provider's sign-in page, with the pending cookie set.
pub(super) async fn sign_on(ctx: &Ctx<'_>) -> PageResult {
    let Some(web) = ctx.reg.auth.as_ref().and_then(|a| a.web_sign_on()) else {
        return Err(PageError::not_found(
            "no single sign-on is configured (auth.oidc)",
        ));
    };
    let begun = web
        .begin(&callback_url(ctx))
        .await
        .map_err(sign_on_failed)?;
    let mut r = crate::http::response::status(StatusCode::SEE_OTHER);
    let c = format!(
        "{PENDING}={}; Path={}/ui/oidc/; HttpOnly; SameSite=Lax; Max-Age={PENDING_TTL_S}{}",
        begun.pending,
        ctx.reg.context_path,
        secure(ctx)
    );
    for (k, v) in [(header::LOCATION, begun.url), (header::SET_COOKIE, c)] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            r.headers_mut().insert(k, v);
        }
    }
    Ok(r)
}

/// Back from the provider: the code is exchanged, the ID token checked, a session opened.
pub(super) async fn sign_on_done(ctx: &Ctx<'_>) -> PageResult {
    let (Some(auth), Some(web)) = (
        ctx.reg.auth.as_ref(),
        ctx.reg.auth.as_ref().and_then(|a| a.web_sign_on()),
    ) else {
        return Err(PageError::not_found(
            "no single sign-on is configured (auth.oidc)",
        ));
    };
    if let Some(error) = ctx.param("error") {
        let detail = ctx.param("error_description").unwrap_or_default();
        return Err(PageError::new(
            StatusCode::UNAUTHORIZED,
            format!("the identity provider said {error}: {detail}"),
        ));
    }
    let (code, state) = (ctx.required("code")?, ctx.required("state")?);
    let pending = cookie(ctx.req, PENDING).unwrap_or_default();
    let person = web
        .finish(&callback_url(ctx), code, state, &pending)
        .await
        .map_err(sign_on_failed)?;
    let who = auth.sign_on_identity(person, ctx.client).ok_or_else(|| {
        PageError::new(
            StatusCode::FORBIDDEN,
            "a local user has this name: log in with its password",
        )
    })?;
    let home = format!("{}/", ctx.reg.context_path);
    let html = format!(
        "<!doctype html><meta http-equiv=\"refresh\" content=\"0;url={home}\">\
         <title>Signed in</title><p>Signed in. <a href=\"{home}\">Continue</a></p>"
    );
    let mut r = super::html_response(StatusCode::OK, html);
    start_session(ctx, &who, &mut r).await?;
    let clear = format!(
        "{PENDING}=; Path={}/ui/oidc/; HttpOnly; SameSite=Lax; Max-Age=0",
        ctx.reg.context_path
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Ends the session in the store (on every core), then clears the cookie.
pub(super) async fn logout(ctx: &Ctx<'_>) -> Response<Body> {
    if let (Some(auth), Some(session)) = (&ctx.reg.auth, cookie(ctx.req, COOKIE)) {
        if let Err(e) = auth.close_session(&session).await {
            tracing::error!(error = %e, "ending a UI session failed");
        }
        if let Some(who) = ctx.viewer.name() {
            tracing::info!(target: "berth_core::audit", who, action = "ui logout", "audit");
        }
    }
    let mut r = ctx.redirect("/");
    let c = format!(
        "{COOKIE}=; Path={}/; HttpOnly; SameSite=Strict; Max-Age=0",
        ctx.reg.context_path
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
