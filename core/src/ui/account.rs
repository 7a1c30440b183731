//! A user's own account: change the password (the current one is asked for, and every session
//! of the user ends, this one included), create API tokens narrowed to some repositories and
//! actions with an expiry, see when and from where each was last used, revoke them. An admin
//! resets another user's password from the admin page. Changes go through the same
//! [`Control`](crate::registry::Control) calls as the admin API's.

use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};

use super::common::{client_host, when};
use super::{form, Ctx, PageError, PageResult, COOKIE};
use crate::auth::{Action, Identity, LoginError, Privilege};
use crate::registry::control::ChangeError;

fn change_failed(e: ChangeError) -> PageError {
    let status = match e {
        ChangeError::Invalid { .. } => StatusCode::BAD_REQUEST,
        ChangeError::NotFound { .. } => StatusCode::NOT_FOUND,
        ChangeError::Conflict(_) => StatusCode::CONFLICT,
        _ => {
            tracing::error!(error = %e, "an account change from the UI failed");
            return PageError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot change that now");
        }
    };
    PageError::new(status, e.to_string())
}

/// `GET /ui/account`.
pub async fn page(ctx: &Ctx<'_>) -> PageResult {
    let user = ctx.signed_in()?;
    let control = &ctx.reg.control;
    let dir = control.directory().await.map_err(change_failed)?;
    let uses = control.token_uses().await.map_err(change_failed)?;
    let tokens: Vec<Value> = dir
        .tokens
        .iter()
        .filter(|t| t.user == user)
        .map(|t| {
            let used = uses.get(&t.id);
            let scope: Vec<String> = t
                .privileges
                .iter()
                .map(|p| {
                    let a: Vec<&str> = p.actions.iter().map(|a| a.scope_name()).collect();
                    format!("{}: {}", p.pattern, a.join(", "))
                })
                .collect();
            json!({
                "id": t.id, "name": t.name,
                "scope": if scope.is_empty() { "everything you may do".to_owned() } else { scope.join("; ") },
                "created": when(t.created_at),
                "expires": t.expires_at.map_or_else(|| "never".to_owned(), when),
                "used": used.map(|u| when(u.at / 1000)), "used_from": used.map(|u| &u.from),
            })
        })
        .collect();
    let roles: Vec<String> = dir
        .users
        .iter()
        .find(|(u, _)| u.name == user)
        .map(|(u, _)| u.roles.clone())
        .unwrap_or_default();
    ctx.render(
        "account.html",
        json!({ "user": user, "roles": roles, "tokens": tokens }),
    )
}

/// `POST /ui/account/password` (`current`, `password`, `confirm`).
pub async fn password(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    let user = ctx.signed_in()?.to_owned();
    let Some(auth) = &ctx.reg.auth else {
        return Err(PageError::not_found("access control is off"));
    };
    let f = form(body).await?;
    let get = |k: &str| crate::http::query_get(&f, k).unwrap_or_default();
    match auth.login(&user, get("current"), ctx.client).await {
        Ok(Identity::User(_)) => {}
        Ok(_) | Err(LoginError::Invalid) => {
            return Err(PageError::new(
                StatusCode::FORBIDDEN,
                "the current password is not right; nothing changed",
            ))
        }
        Err(e) => return Err(PageError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())),
    }
    if get("password") != get("confirm") {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "the new password and its confirmation differ; nothing changed",
        ));
    }
    ctx.reg
        .control
        .set_password(ctx.reg, &user, get("password"), &user)
        .await
        .map_err(change_failed)?;
    // Every session of the user ended with the change; this browser's cookie goes too.
    let mut r = ctx.done(
        "/ui/login",
        "Password changed. Every session of yours has ended: log in with the new password.",
    );
    let c = format!(
        "{COOKIE}=; Path={}/; HttpOnly; SameSite=Strict; Max-Age=0",
        ctx.reg.context_path
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// The privileges a token form asks for: one repository pattern, some of pull/push/delete.
fn privileges_of(f: &[(String, String)]) -> Result<Vec<Privilege>, PageError> {
    let pattern = crate::http::query_get(f, "repositories")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .unwrap_or("*");
    let actions: Vec<Action> = f
        .iter()
        .filter(|(k, _)| k == "action")
        .filter_map(|(_, v)| match v.as_str() {
            "pull" => Some(Action::Read),
            "push" => Some(Action::Write),
            "delete" => Some(Action::Delete),
            _ => None,
        })
        .collect();
    if actions.is_empty() {
        return Err(PageError::new(
            StatusCode::BAD_REQUEST,
            "choose at least one action (pull, push, delete) for the token",
        ));
    }
    Ok(vec![Privilege {
        pattern: pattern.to_owned(),
        actions,
    }])
}

/// `POST /ui/account/tokens` (`name`, `repositories`, `action`..., `expires_in`): shows the
/// token once.
pub async fn create_token(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    let user = ctx.signed_in()?.to_owned();
    let f = form(body).await?;
    let privileges = privileges_of(&f)?;
    let lifetime = match crate::http::query_get(&f, "expires_in").map(str::trim) {
        None | Some("") | Some("never") => None,
        Some(e) => Some(berth_config::parse_duration(e).map_err(|r| {
            PageError::new(StatusCode::BAD_REQUEST, format!("expires in {e:?}: {r}"))
        })?),
    };
    let name = crate::http::query_get(&f, "name").unwrap_or_default();
    let (token, secret) = ctx
        .reg
        .control
        .issue_token(ctx.reg, &user, name, privileges, lifetime, &user)
        .await
        .map_err(change_failed)?;
    ctx.render(
        "token.html",
        json!({
            "user": user, "name": token.name, "secret": secret, "host": client_host(ctx),
            "expires": token.expires_at.map_or_else(|| "never".to_owned(), when),
        }),
    )
}

/// `POST /ui/account/tokens/revoke` (`id`).
pub async fn revoke_token(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    let user = ctx.signed_in()?.to_owned();
    let f = form(body).await?;
    let id = crate::http::query_get(&f, "id").unwrap_or_default();
    let gone = ctx
        .reg
        .control
        .revoke_token(ctx.reg, &user, id, &user)
        .await
        .map_err(change_failed)?;
    if !gone {
        return Err(PageError::not_found(format!("you have no token {id:?}")));
    }
    Ok(ctx.done("/ui/account", &format!("token {id} revoked")))
}

/// `POST /ui/admin/password` (`user`, `password`): an admin sets another user's password.
pub async fn reset(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    ctx.admin_only()?;
    let f = form(body).await?;
    let get = |k: &str| crate::http::query_get(&f, k).unwrap_or_default();
    let user = get("user");
    ctx.reg
        .control
        .set_password(ctx.reg, user, get("password"), ctx.viewer.actor())
        .await
        .map_err(change_failed)?;
    Ok(ctx.done(
        "/ui/admin",
        &format!("password of {user} set; their sessions have ended"),
    ))
}
