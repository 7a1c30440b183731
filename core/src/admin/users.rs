//! `/api/v1/users`, `/api/v1/roles` and per-user API tokens: access control changed at run
//! time. Passwords arrive in the clear over the admin API and are hashed here (argon2id);
//! hashes are never shown, and a token's secret is shown once, in the answer that creates it.

use http::request::Parts;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{AdminError, AdminResult};
use super::repos::change_error;
use crate::auth::{ApiToken, Privilege};
use crate::http::response;
use crate::registry::directory::{hash_new_password, EntryChange};
use crate::registry::Registry;
use crate::storage::metadata::sessions::TokenUse;
use crate::storage::metadata::settings::SettingKind;

/// A users/roles/tokens endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirRoute {
    Users,
    User(String),
    Password(String),
    Tokens(String),
    Token(String, String),
    Roles,
    Role(String),
    /// Users of a directory (LDAP) who logged in: read-only, their source of truth is elsewhere.
    DirectoryUsers,
}

/// The route and the methods it takes, for `rest` (the path under the context path).
pub fn route(rest: &str) -> Option<(DirRoute, &'static [&'static str])> {
    const LIST: &[&str] = &["GET", "HEAD", "POST"];
    const ONE: &[&str] = &["GET", "HEAD", "PUT", "DELETE"];
    let segs: Vec<&str> = rest.strip_prefix("/api/v1/")?.split('/').collect();
    let s = |x: &str| x.to_owned();
    Some(match segs.as_slice() {
        ["users"] => (DirRoute::Users, LIST),
        ["users", u] if !u.is_empty() => (DirRoute::User(s(u)), ONE),
        ["users", u, "password"] => (DirRoute::Password(s(u)), &["PUT"]),
        ["users", u, "tokens"] => (DirRoute::Tokens(s(u)), LIST),
        ["users", u, "tokens", id] => (DirRoute::Token(s(u), s(id)), &["DELETE"]),
        ["roles"] => (DirRoute::Roles, LIST),
        ["roles", r] if !r.is_empty() => (DirRoute::Role(s(r)), ONE),
        ["directory-users"] => (DirRoute::DirectoryUsers, &["GET", "HEAD"]),
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: Option<String>,
    password: Option<String>,
    password_hash: Option<String>,
    roles: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
    #[serde(default)]
    privileges: Vec<Privilege>,
    /// `90d`, `12h`; absent: until revoked.
    expires_in: Option<String>,
}

fn bad(reason: impl Into<String>) -> AdminError {
    AdminError::invalid(reason)
}

fn not_found(what: &str, name: &str) -> AdminError {
    AdminError::not_found(format!("no {what} named {name:?}"))
}

fn body<T: serde::de::DeserializeOwned>(v: Option<Value>) -> Result<T, AdminError> {
    serde_json::from_value(v.unwrap_or(Value::Null)).map_err(|e| bad(format!("request body: {e}")))
}

/// Serves one users/roles/tokens request.
pub async fn serve(
    reg: &Registry,
    route: DirRoute,
    req: &Parts,
    v: Option<Value>,
    actor: &str,
) -> AdminResult {
    let m = &req.method;
    match route {
        DirRoute::Users | DirRoute::User(_) | DirRoute::Password(_) => {
            serve_user(reg, route, m, v, actor).await
        }
        DirRoute::Tokens(user) if m == Method::POST => {
            create_token(reg, &user, body(v)?, actor).await
        }
        DirRoute::Tokens(user) => tokens(reg, &user).await,
        DirRoute::Token(user, id) => {
            let gone = reg
                .control
                .revoke_token(reg, &user, &id, actor)
                .await
                .map_err(change_error)?;
            if !gone {
                return Err(not_found("token", &id));
            }
            Ok(response::status(StatusCode::NO_CONTENT))
        }
        DirRoute::Roles | DirRoute::Role(_) => serve_role(reg, route, m, v, actor).await,
        DirRoute::DirectoryUsers => directory_users(reg).await,
    }
}

/// Every directory user that logged in (on any core), with the roles of its last login.
async fn directory_users(reg: &Registry) -> AdminResult {
    let logins = match &reg.auth {
        Some(auth) => auth.directory_logins().await.map_err(|e| {
            AdminError::new(
                super::error::Problem::Internal,
                format!("reading directory logins: {e}"),
            )
        })?,
        None => Vec::new(),
    };
    let out: Vec<Value> = logins
        .into_iter()
        .map(|l| {
            json!({ "name": l.user, "source": l.source, "roles": l.roles,
                    "last_login_at": l.at / 1000, "last_login_from": l.from })
        })
        .collect();
    Ok(response::json(StatusCode::OK, &Value::Array(out)))
}

/// Stores a user or role and answers it as it is now (`view`).
async fn set_and_show(
    reg: &Registry,
    kind: SettingKind,
    name: &str,
    entry: Option<Value>,
    create: bool,
    actor: &str,
) -> AdminResult {
    let deleting = entry.is_none();
    set(reg, kind, name, entry, create, actor).await?;
    if deleting {
        return Ok(response::status(StatusCode::NO_CONTENT));
    }
    let status = if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let v = match kind {
        SettingKind::User => user_view(reg, name).await?,
        _ => role_view(reg, name).await?,
    };
    Ok(response::json(status, &v))
}

async fn serve_user(
    reg: &Registry,
    route: DirRoute,
    m: &Method,
    v: Option<Value>,
    actor: &str,
) -> AdminResult {
    let kind = SettingKind::User;
    match route {
        DirRoute::Users if m == Method::POST => {
            let b: UserBody = body(v)?;
            let name = b.name.clone().ok_or_else(|| bad("name: missing"))?;
            let entry = user_entry(&name, b, None).await?;
            set_and_show(reg, kind, &name, Some(entry), true, actor).await
        }
        DirRoute::User(name) if m == Method::PUT => {
            let current = current_user(reg, &name).await?;
            let entry = user_entry(&name, body(v)?, Some(current)).await?;
            set_and_show(reg, kind, &name, Some(entry), false, actor).await
        }
        DirRoute::User(name) if m == Method::DELETE => {
            set_and_show(reg, kind, &name, None, false, actor).await
        }
        DirRoute::User(name) => Ok(response::json(
            StatusCode::OK,
            &user_view(reg, &name).await?,
        )),
        DirRoute::Password(name) => {
            let password = body::<PasswordBody>(v)?.password;
            reg.control
                .set_password(reg, &name, &password, actor)
                .await
                .map_err(change_error)?;
            Ok(response::status(StatusCode::NO_CONTENT))
        }
        _ => users(reg).await,
    }
}

async fn serve_role(
    reg: &Registry,
    route: DirRoute,
    m: &Method,
    v: Option<Value>,
    actor: &str,
) -> AdminResult {
    let kind = SettingKind::Role;
    match route {
        DirRoute::Roles if m == Method::POST => {
            let v = v.unwrap_or(Value::Null);
            let name = v["name"]
                .as_str()
                .ok_or_else(|| bad("name: missing"))?
                .to_owned();
            set_and_show(reg, kind, &name, Some(v), true, actor).await
        }
        DirRoute::Role(name) if m == Method::PUT => {
            let mut v = v.unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("name".into(), json!(name));
            }
            set_and_show(reg, kind, &name, Some(v), false, actor).await
        }
        DirRoute::Role(name) if m == Method::DELETE => {
            set_and_show(reg, kind, &name, None, false, actor).await
        }
        DirRoute::Role(name) => Ok(response::json(
            StatusCode::OK,
            &role_view(reg, &name).await?,
        )),
        _ => roles(reg).await,
    }
}

/// A user entry in the config file's shape from a body (and the user as it was).
async fn user_entry(
    name: &str,
    b: UserBody,
    current: Option<crate::auth::UserConfig>,
) -> Result<Value, AdminError> {
    if b.name.as_deref().is_some_and(|n| n != name) {
        return Err(bad(
            "name: differs from the user in the URL; renaming is not supported",
        ));
    }
    let password_hash = match (b.password, b.password_hash, &current) {
        (Some(p), None, _) => hash_new_password(&p).await.map_err(change_error)?,
        (None, Some(h), _) => h,
        (None, None, Some(c)) => c.password_hash.clone(),
        (None, None, None) => return Err(bad("password: missing")),
        (Some(_), Some(_), _) => return Err(bad("give password or password_hash, not both")),
    };
    let roles = b
        .roles
        .or_else(|| current.map(|c| c.roles))
        .unwrap_or_default();
    Ok(json!({ "name": name, "password_hash": password_hash, "roles": roles }))
}

async fn set(
    reg: &Registry,
    kind: SettingKind,
    name: &str,
    entry: Option<Value>,
    create: bool,
    actor: &str,
) -> Result<(), AdminError> {
    let change = EntryChange {
        kind,
        name: name.to_owned(),
        entry,
        create,
    };
    reg.control
        .change_entry(reg, change, actor)
        .await
        .map_err(change_error)
}

async fn current_user(reg: &Registry, name: &str) -> Result<crate::auth::UserConfig, AdminError> {
    let d = reg.control.directory().await.map_err(change_error)?;
    d.users
        .into_iter()
        .find(|(u, _)| u.name == name)
        .map(|(u, _)| u)
        .ok_or_else(|| not_found("user", name))
}

async fn users(reg: &Registry) -> AdminResult {
    let d = reg.control.directory().await.map_err(change_error)?;
    let out: Vec<Value> = d
        .users
        .iter()
        .map(|(u, o)| {
            let tokens = d.tokens.iter().filter(|t| t.user == u.name).count();
            json!({ "name": u.name, "roles": u.roles, "origin": o, "tokens": tokens,
                    "source": "local" })
        })
        .collect();
    Ok(response::json(StatusCode::OK, &Value::Array(out)))
}

async fn user_view(reg: &Registry, name: &str) -> Result<Value, AdminError> {
    let d = reg.control.directory().await.map_err(change_error)?;
    let (u, o) = d
        .users
        .iter()
        .find(|(u, _)| u.name == name)
        .ok_or_else(|| not_found("user", name))?;
    let tokens = d.tokens.iter().filter(|t| t.user == u.name).count();
    Ok(
        json!({ "name": u.name, "roles": u.roles, "origin": o, "tokens": tokens,
               "source": "local" }),
    )
}

async fn roles(reg: &Registry) -> AdminResult {
    let d = reg.control.directory().await.map_err(change_error)?;
    let out: Vec<Value> = d
        .roles
        .iter()
        .map(|(r, o)| json!({ "name": r.name, "privileges": r.privileges, "origin": o }))
        .collect();
    Ok(response::json(StatusCode::OK, &Value::Array(out)))
}

async fn role_view(reg: &Registry, name: &str) -> Result<Value, AdminError> {
    let d = reg.control.directory().await.map_err(change_error)?;
    d.roles
        .iter()
        .find(|(r, _)| r.name == name)
        .map(|(r, o)| json!({ "name": r.name, "privileges": r.privileges, "origin": o }))
        .ok_or_else(|| not_found("role", name))
}

fn token_view(t: &ApiToken, used: Option<&TokenUse>) -> Value {
    json!({
        "id": t.id, "user": t.user, "name": t.name, "privileges": t.privileges,
        "created_at": t.created_at, "expires_at": t.expires_at,
        "last_used_at": used.map(|u| u.at / 1000), "last_used_from": used.map(|u| &u.from),
    })
}

async fn tokens(reg: &Registry, user: &str) -> AdminResult {
    current_user(reg, user).await?;
    let d = reg.control.directory().await.map_err(change_error)?;
    let uses = reg.control.token_uses().await.map_err(change_error)?;
    let out: Vec<Value> = d
        .tokens
        .iter()
        .filter(|t| t.user == user)
        .map(|t| token_view(t, uses.get(&t.id)))
        .collect();
    Ok(response::json(StatusCode::OK, &Value::Array(out)))
}

async fn create_token(reg: &Registry, user: &str, b: TokenBody, actor: &str) -> AdminResult {
    let lifetime = b
        .expires_in
        .as_deref()
        .map(|e| berth_config::parse_duration(e).map_err(|r| bad(format!("expires_in: {r}"))))
        .transpose()?;
    let (token, secret) = reg
        .control
        .issue_token(reg, user, &b.name, b.privileges, lifetime, actor)
        .await
        .map_err(change_error)?;
    let mut v = token_view(&token, None);
    v["token"] = json!(secret);
    Ok(response::json(StatusCode::CREATED, &v))
}
