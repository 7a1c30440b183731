//! Signing in and out of the web UI: a password (local or directory) opens a session row in
//! the metadata store and sets its cookie; logout removes the row on every core and clears the
//! cookie. Kept apart from the page plumbing in `mod.rs`.

use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::{cookie, form, Ctx, PageError, PageResult, COOKIE};
use crate::auth::Identity;
use crate::http::Body;

/// Checks the form's password and, if it passes, opens a session.
pub(super) async fn login(ctx: &Ctx<'_>, body: Body) -> PageResult {
    let https = ctx.base.starts_with("https://");
    let Some(auth) = &ctx.reg.auth else {
        return Ok(ctx.redirect("/"));
    };
    let f = form(body).await?;
    let get = |k: &str| crate::http::query_get(&f, k).unwrap_or_default().to_owned();
    let (user, password) = (get("user"), get("password"));
    // Fresh: a directory user's groups are read again at every sign-in.
    match auth.login_fresh(&user, &password, ctx.client).await {
        Ok(who @ (Identity::User(_) | Identity::External { .. })) => {
            let session = auth.open_session(&who).await.map_err(|e| {
                tracing::error!(error = %e, "storing a UI session failed");
                PageError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot sign in right now")
            })?;
            let ttl = match who {
                Identity::External { .. } => crate::auth::DIRECTORY_SESSION_TTL,
                _ => crate::auth::SESSION_TTL,
            };
            let mut r = ctx.redirect("/");
            let secure = if https { "; Secure" } else { "" };
            let c = format!(
                "{COOKIE}={session}; Path={}/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                ctx.reg.context_path,
                ttl.as_secs()
            );
            if let Ok(v) = HeaderValue::from_str(&c) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            let name = who.name();
            tracing::info!(target: "berth_core::audit", who = %name, action = "ui login", "audit");
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
