//! Authentication and authorisation at the HTTP edge of the core: who is calling (Basic,
//! Bearer or nobody), whether they may do what the request does, the 401 challenge that sends
//! Docker clients to the token realm, and the realm itself (`GET /v2/token`).

use std::net::IpAddr;
use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;

use super::response;
use super::route::Route;
use super::{err, query, ApiError, ApiResult, CallerOf, Conn, Listener, Registry, Target};
use crate::auth::{Action, Auth, Claims, Grant, Identity, LoginError};
use crate::http::{credentials, Credentials};
use crate::oci::{ErrorCode, ImageName, RepoName};

/// The service name in challenges and tokens.
pub const SERVICE: &str = "berth";

/// An identified caller.
pub struct Caller {
    pub identity: Identity,
    /// Set when the caller presented a registry token: its grants narrow the identity's
    /// privileges further.
    pub claims: Option<Claims>,
}

/// The client address a request really comes from (the edge's X-Forwarded-For if trusted).
pub fn client_ip(reg: &Registry, conn: Conn, parts: &Parts) -> IpAddr {
    crate::http::client_ip(&reg.trusted_proxies, conn, parts)
}

/// Who a request counts against for per-client shares: the user if one signed in, else the
/// client address.
pub fn client_key(reg: &Registry, caller: &CallerOf<'_>, conn: Conn, parts: &Parts) -> String {
    match caller {
        Some((_, c)) if c.identity != Identity::Anonymous => format!("user:{}", c.identity.name()),
        _ => client_ip(reg, conn, parts).to_string(),
    }
}

fn unauthorized(message: &str, challenge: String) -> ApiError {
    err(ErrorCode::Unauthorized, message).with_header("www-authenticate", challenge)
}

/// `Bearer realm=...,service=...[,scope=...]` pointing at this listener's external URL.
pub fn challenge(base: &str, scope: Option<&str>) -> String {
    let mut c = format!("Bearer realm=\"{base}/v2/token\",service=\"{SERVICE}\"");
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    c
}

/// Reads the Authorization header. A wrong password or a bad token is an error; no header
/// is the anonymous caller.
pub async fn identify(
    auth: &Auth,
    client: IpAddr,
    parts: &Parts,
    base: &str,
) -> Result<Caller, ApiError> {
    identify_as(auth, client, parts, base, false).await
}

/// [`identify`]; `fresh` asks a directory user's password (and groups) of the directory even
/// when it passed a moment ago, as the token realm does.
async fn identify_as(
    auth: &Auth,
    client: IpAddr,
    parts: &Parts,
    base: &str,
    fresh: bool,
) -> Result<Caller, ApiError> {
    let refuse = |message: &str| unauthorized(message, challenge(base, None));
    let (user, pass) = match credentials(parts) {
        Credentials::None => {
            return Ok(Caller {
                identity: Identity::Anonymous,
                claims: None,
            })
        }
        Credentials::Bearer(token) => {
            let (identity, claims) = auth.bearer(token).ok_or_else(|| {
                refuse(
                    "the token is invalid, expired, or no longer stands (its user, API token \
                     or password changed)",
                )
            })?;
            return Ok(Caller {
                identity,
                claims: Some(claims),
            });
        }
        Credentials::Basic { user, password } => (user, password),
        Credentials::MalformedBasic => return Err(refuse("malformed Basic credentials")),
        Credentials::Unsupported => return Err(refuse("unsupported Authorization scheme")),
    };
    let checked = if fresh {
        auth.login_fresh(&user, &pass, client).await
    } else {
        auth.login(&user, &pass, client).await
    };
    match checked {
        Ok(identity) => Ok(Caller {
            identity,
            claims: None,
        }),
        Err(LoginError::Invalid) => Err(refuse("invalid user name or password")),
        Err(e @ LoginError::TooMany(wait)) => {
            Err(err(ErrorCode::TooManyRequests, e.to_string()).retry_after(wait))
        }
        Err(e @ LoginError::Busy) => Err(err(ErrorCode::TooManyRequests, e.to_string())
            .retry_after(std::time::Duration::from_secs(1))),
        // Not 401: nobody should think their password is wrong.
        Err(e @ LoginError::Unavailable(_)) => Err(ApiError::Unavailable(e.to_string())),
    }
}

/// Anonymous callers without a token are sent to the realm (for `/v2/` and `_catalog`).
pub fn signed_in(caller: &CallerOf<'_>, base: &str) -> Result<(), ApiError> {
    match caller {
        Some((_, c)) if c.identity == Identity::Anonymous && c.claims.is_none() => Err(
            unauthorized("authentication required", challenge(base, None)),
        ),
        _ => Ok(()),
    }
}

/// Whether the catalog lists `name` to this caller: what the identity behind the request may
/// read (a registry token stands for the identity it was issued to, narrowed as that was).
pub fn may_read(caller: &CallerOf<'_>, name: &RepoName) -> bool {
    match caller {
        Some((auth, c)) => auth.can(&c.identity, name, Action::Read),
        None => true,
    }
}

/// V1 search needs read on the connector's repository.
pub fn may_search(
    caller: &CallerOf<'_>,
    listener: &Listener,
    route: &Route<'_>,
    base: &str,
) -> Result<(), ApiError> {
    let (Route::V1Search, Listener::Connector(entry), Some((auth, c))) = (route, listener, caller)
    else {
        return Ok(());
    };
    if auth.can(&c.identity, entry.repo.name(), Action::Read) {
        return Ok(());
    }
    signed_in(caller, base)?;
    Err(err(
        ErrorCode::Denied,
        format!("{} may not search {}", c.identity.name(), entry.repo.name()),
    ))
}

/// The action a request method stands for.
pub fn action_of(method: &http::Method) -> Action {
    match *method {
        http::Method::GET | http::Method::HEAD => Action::Read,
        http::Method::DELETE => Action::Delete,
        _ => Action::Write,
    }
}

fn scope_actions(action: Action) -> &'static str {
    match action {
        Action::Read => "pull",
        Action::Write => "pull,push",
        Action::Delete => "delete",
        Action::Admin => "*",
    }
}

/// The repositories whose privileges a request needs: the one that stores a write (a group's
/// writable member), the one that serves a read — and for a mirror read (`?ns=`, reads only)
/// the group as well as the repository it hands the request to.
fn privilege_repos(t: &Target, action: Action) -> Vec<&RepoName> {
    match action {
        Action::Write | Action::Delete => {
            vec![t.entry.write_repo.as_ref().unwrap_or(t.entry.repo.name())]
        }
        _ => {
            let mut repos = vec![t.entry.repo.name()];
            repos.extend(t.mirror.as_ref().map(|m| m.repo.name()));
            repos
        }
    }
}

/// Whether the caller may do `action` on the target; a 401 challenge (or 403) if not.
pub fn authorize(auth: &Auth, caller: &Caller, t: &Target, action: Action) -> Result<(), ApiError> {
    let internal = format!("{}/{}", t.entry.repo.name(), t.image);
    let grants = caller.claims.as_ref().map(|c| c.access.as_slice());
    let repos = privilege_repos(t, action);
    let allowed = auth.permits(&caller.identity, grants, &internal, &repos, action);
    if allowed {
        return Ok(());
    }
    let scope = format!("repository:{}:{}", t.client_name(), scope_actions(action));
    match (&caller.identity, &caller.claims) {
        // Known user, password given, not allowed: no token will change that.
        (
            Identity::User(u)
            | Identity::Token { user: u, .. }
            | Identity::External { user: u, .. },
            None,
        ) => Err(err(
            ErrorCode::Denied,
            format!("{u} may not {} {}", scope_actions(action), t.client_name()),
        )),
        _ => Err(unauthorized(
            &format!(
                "authentication required to {} {}",
                scope_actions(action),
                t.client_name()
            ),
            challenge(&t.base, Some(&scope)),
        )),
    }
}

/// `GET /v2/token?service=&scope=repository:NAME:ACTIONS...`: the bearer-token realm.
pub async fn token(
    reg: &Registry,
    auth: &Auth,
    listener: &Listener,
    conn: Conn,
    parts: &Parts,
    base: &str,
) -> ApiResult {
    let client = client_ip(reg, conn, parts);
    // The realm itself asks for Basic: a Bearer challenge here would send clients in a loop.
    let basic_challenge = |message: String| {
        err(ErrorCode::Unauthorized, message)
            .with_header("www-authenticate", format!("Basic realm=\"{SERVICE}\""))
    };
    let caller = match credentials(parts) {
        Credentials::None => Caller {
            identity: Identity::Anonymous,
            claims: None,
        },
        // A token is never a login: exchanging one for another would let it renew itself.
        Credentials::Bearer(_) | Credentials::Unsupported => {
            return Err(basic_challenge(
                "the token realm takes Basic credentials (a password or an API token), not a \
                 bearer token"
                    .into(),
            ));
        }
        Credentials::Basic { .. } | Credentials::MalformedBasic => {
            identify_as(auth, client, parts, base, true)
                .await
                .map_err(|e| match e {
                    ApiError::Client { error, .. } if error.code == ErrorCode::Unauthorized => {
                        basic_challenge(error.message)
                    }
                    other => other,
                })?
        }
    };
    let access = grants(reg, auth, listener, &caller.identity, parts);
    tracing::info!(
        user = caller.identity.name(),
        grants = access.len(),
        "token issued"
    );
    let token = auth.issue(&caller.identity, access);
    Ok(response::json(
        StatusCode::OK,
        &serde_json::json!({
            "token": token,
            "access_token": token,
            "expires_in": auth.token_ttl.as_secs(),
        }),
    ))
}

/// What `who` is granted of each `scope=repository:NAME:ACTIONS` the request asks for (only
/// what the roles allow; a scope naming nothing on this listener is skipped).
fn grants(
    reg: &Registry,
    auth: &Auth,
    listener: &Listener,
    who: &Identity,
    parts: &Parts,
) -> Vec<Grant> {
    let mut access = Vec::new();
    for (k, scope) in query(parts) {
        if k != "scope" {
            continue;
        }
        for one in scope.split(' ') {
            let mut parts_iter = one.splitn(2, ':');
            if parts_iter.next() != Some("repository") {
                continue;
            }
            let Some(rest) = parts_iter.next() else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            let Some((entry, repo, image)) = resolve(reg, listener, name) else {
                continue;
            };
            let write_repo = entry.write_repo.clone().unwrap_or_else(|| repo.clone());
            let granted: Vec<String> = actions
                .split(',')
                .flat_map(|a| match a {
                    "*" => vec!["pull", "push", "delete"],
                    other => vec![other],
                })
                .filter(|a| match *a {
                    "pull" => auth.can(who, &repo, Action::Read),
                    "push" => auth.can(who, &write_repo, Action::Write),
                    "delete" => auth.can(who, &write_repo, Action::Delete),
                    _ => false,
                })
                .map(str::to_owned)
                .collect();
            if !granted.is_empty() {
                access.push(Grant {
                    name: format!("{repo}/{image}"),
                    actions: granted,
                });
            }
        }
    }
    access
}

/// Maps a client-visible name on this listener to its repository and image.
fn resolve(
    reg: &Registry,
    listener: &Listener,
    name: &str,
) -> Option<(Arc<super::RepoEntry>, RepoName, ImageName)> {
    let image: ImageName = name.parse().ok()?;
    match listener {
        Listener::Connector(entry) => Some((entry.clone(), entry.repo.name().clone(), image)),
        Listener::Main => {
            let (first, rest) = image.split_first();
            let entry = reg.repos().get(first).cloned()?;
            Some((entry.clone(), entry.repo.name().clone(), rest?))
        }
    }
}
