//! What the remote said, as the proxy acts on it: found (the response, to read), missing, or
//! one of [`RemoteError`]'s failures — rate-limited with the wait it asked for, unauthorised,
//! any other status, unreachable. Callers branch on these meanings, never on a status code.

use std::time::Duration;

use http::{header, Method, Response, StatusCode};
use hyper::body::Incoming;

use super::remote::{Remote, RemoteError};

/// A remote's answer that is not a failure.
pub enum Answer {
    /// 2xx: the headers, and the body still to read.
    Found(Response<Incoming>),
    /// 404: the remote does not have it.
    Missing,
}

impl Remote {
    /// Asks for `path` (see [`Remote::request`]); `what` names the object in errors.
    pub async fn ask(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope: &str,
        what: &str,
    ) -> Result<Answer, RemoteError> {
        let resp = self.request(method, path, accept, scope).await?;
        let status = resp.status();
        match status {
            s if s.is_success() => Ok(Answer::Found(resp)),
            StatusCode::NOT_FOUND => Ok(Answer::Missing),
            StatusCode::TOO_MANY_REQUESTS => Err(RemoteError::RateLimited {
                url: self.url().to_owned(),
                retry_after: retry_after(&resp),
            }),
            StatusCode::UNAUTHORIZED => Err(RemoteError::Auth {
                url: self.url().to_owned(),
                reason: format!("{what} needs credentials we do not have"),
            }),
            status => Err(RemoteError::Refused {
                url: self.url().to_owned(),
                status,
                what: what.to_owned(),
            }),
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries and read as absent).
fn retry_after(resp: &Response<Incoming>) -> Option<Duration> {
    resp.headers()
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}
