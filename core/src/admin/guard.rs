//! Who may use the admin API, and what a browser must not be made to send to it.
//!
//! The admin API takes Basic with an admin's password, or an API token that itself was given
//! the admin privilege — never a registry token (those are for the registry API, within their
//! scopes) and never a UI session (the UI has its own forms and CSRF guard). Its writes are
//! JSON from the same site only.

use std::net::IpAddr;

use http::request::Parts;
use http::Method;

use super::error::{AdminError, Problem};
use crate::auth::{Auth, Identity, LoginError};
use crate::http::{credentials, Credentials};

/// The realm named in the admin API's Basic challenge.
const REALM: &str = "berth";

fn challenge(message: &str) -> AdminError {
    AdminError::new(Problem::Unauthorized, message)
        .with_header("www-authenticate", format!("Basic realm=\"{REALM}\""))
}

/// The user behind a request's Basic credentials (a password or an API token).
async fn authenticate(auth: &Auth, req: &Parts, client: IpAddr) -> Result<Identity, AdminError> {
    let (user, password) = match credentials(req) {
        Credentials::Basic { user, password } => (user, password),
        Credentials::Bearer(_) => {
            return Err(challenge(
                "the admin API takes Basic credentials (an admin's password, or an API token \
                 given the admin privilege), not a registry token",
            ))
        }
        Credentials::None => return Err(challenge("the admin API needs an admin user")),
        Credentials::MalformedBasic => return Err(challenge("malformed Basic credentials")),
        Credentials::Unsupported => return Err(challenge("unsupported Authorization scheme")),
    };
    auth.login(&user, &password, client)
        .await
        .map_err(|e| match e {
            LoginError::Invalid => challenge("invalid user name or password"),
            LoginError::TooMany(wait) => {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                AdminError::new(Problem::TooManyRequests, e.to_string())
                    .with_header("retry-after", secs.max(1).to_string())
            }
            LoginError::Busy => AdminError::new(Problem::TooManyRequests, e.to_string())
                .with_header("retry-after", "1"),
            LoginError::Unavailable(_) => {
                AdminError::new(Problem::Unavailable, e.to_string()).with_header("retry-after", "5")
            }
        })
}

/// The admin behind a request, by name (for audit lines and tag history).
pub async fn admin(auth: &Auth, req: &Parts, client: IpAddr) -> Result<String, AdminError> {
    let identity = authenticate(auth, req, client).await?;
    if !auth.is_admin(&identity) {
        return Err(challenge(
            "the admin API needs an admin user (an API token needs the admin privilege on * \
             itself)",
        ));
    }
    Ok(identity.name().to_owned())
}

/// Who may set `user`'s password: an admin, or `user` signed in with the current password
/// (not with an API token: a token leaked from CI must not be able to take the account).
pub async fn admin_or_self(
    auth: &Auth,
    req: &Parts,
    client: IpAddr,
    user: &str,
) -> Result<String, AdminError> {
    let identity = authenticate(auth, req, client).await?;
    if auth.is_admin(&identity) {
        return Ok(identity.name().to_owned());
    }
    match identity {
        Identity::User(name) if name == user => Ok(name),
        Identity::Token { user: owner, .. } if owner == user => Err(AdminError::new(
            Problem::Forbidden,
            "an API token cannot change its user's password; sign in with the current password",
        )),
        _ => Err(AdminError::new(
            Problem::Forbidden,
            format!("only an admin or {user} may set {user}'s password"),
        )),
    }
}

/// What a browser cannot be made to send from another site: the admin API answers Basic
/// challenges (so a browser may hold an admin's credentials for the origin), so every write
/// must be JSON — a cross-site form or a no-CORS `fetch` can only send form, multipart or plain
/// text bodies, and anything else needs a preflight this API never grants — and must not be
/// marked cross-site by `Sec-Fetch-Site` or carry a foreign `Origin`.
pub fn forgery_guard(req: &Parts, base: &str) -> Result<(), AdminError> {
    if req.method == Method::GET || req.method == Method::HEAD {
        return Ok(());
    }
    let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
    let forbidden = |m: String| AdminError::new(Problem::Forbidden, m);
    if let Some(site @ ("cross-site" | "same-site")) = header("sec-fetch-site") {
        return Err(forbidden(format!(
            "admin API writes from another site are refused (Sec-Fetch-Site: {site})"
        )));
    }
    if let Some(origin) = header("origin") {
        if !origin.eq_ignore_ascii_case(base) {
            return Err(forbidden(format!(
                "admin API writes from another origin are refused (Origin: {origin})"
            )));
        }
    }
    if req.method != Method::DELETE {
        let json = header("content-type")
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(AdminError::new(
                Problem::UnsupportedMediaType,
                "admin API writes take Content-Type: application/json (with or without a body)",
            ));
        }
    }
    Ok(())
}
