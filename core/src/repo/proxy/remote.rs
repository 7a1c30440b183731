//! The remote registry behind a proxy repository: an HTTP(S) client that speaks the
//! Distribution auth dance (anonymous, basic, and the bearer-token challenge with tokens cached
//! per scope until they expire), and that tracks the remote's health so a failing remote is
//! blocked for a while instead of being hammered.
//!
//! Every call is bounded (`RemoteTimeouts`): connection set-up, the wait for response headers,
//! and each pause inside a body; small bodies (tokens, tag lists, manifests) are read with a
//! size limit. A timeout is a failure like any other and counts towards auto-blocking.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::bounded::BoundedMap;
use super::settings::{ProxySettings, RemoteTimeouts};
use crate::oci::ImageName;
use crate::storage::ByteStream;

/// Bound on cached bearer tokens: scopes are built from client-supplied image names.
const MAX_TOKENS: usize = 4096;
/// Longest a token is kept, whatever the realm says.
const MAX_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Largest token response read from a realm.
const MAX_TOKEN_BODY: usize = 64 * 1024;

/// Manifest types asked of the remote, so it never down-converts to schema 1.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Why the remote could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RemoteError {
    #[error("remote {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("remote {url} is blocked for {secs} s more after {failures} consecutive failures")]
    Blocked {
        url: String,
        secs: u64,
        failures: u32,
    },
    #[error("remote {url} refused the credentials: {reason}")]
    Auth { url: String, reason: String },
    #[error("reading {what} from remote {url} failed: {reason}")]
    Body {
        url: String,
        what: String,
        reason: String,
    },
    /// Its 429, with the wait its `Retry-After` asked for.
    #[error("remote {url} rate-limits us")]
    RateLimited {
        url: String,
        retry_after: Option<Duration>,
    },
    /// Any other answer than found or missing.
    #[error("remote {url} answered {status} for {what}")]
    Refused {
        url: String,
        status: StatusCode,
        what: String,
    },
}

#[derive(Default)]
struct Health {
    consecutive_failures: u32,
    blocked_until: Option<Instant>,
    last_error: Option<String>,
}

/// A client for one remote registry.
pub struct Remote {
    base: String,
    docker_hub: bool,
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    basic: Option<String>,
    /// Bearer tokens by scope, with their expiry (bounded: `MAX_TOKENS`, `MAX_TOKEN_TTL`).
    tokens: BoundedMap<String, (String, Instant)>,
    timeouts: RemoteTimeouts,
    health: Mutex<Health>,
    block_after: u32,
    block_for: Duration,
    /// Time to response headers (an unregistered histogram until [`Remote::observed`]).
    latency: prometheus_client::metrics::histogram::Histogram,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `key="value"` pairs of a `WWW-Authenticate` challenge.
impl Remote {
    pub fn new(settings: &ProxySettings) -> std::io::Result<Remote> {
        let client =
            crate::net::https_client(settings.ca_file.as_deref(), settings.timeouts.connect)?;
        let basic = match (&settings.username, &settings.password) {
            (Some(u), Some(p)) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                Some(format!("Basic {encoded}"))
            }
            _ => None,
        };
        let host = settings
            .url
            .split("://")
            .nth(1)
            .unwrap_or("")
            .split('/')
            .next()
            .unwrap_or("");
        Ok(Remote {
            docker_hub: host == "registry-1.docker.io"
                || host == "docker.io"
                || host == "index.docker.io",
            base: settings.url.clone(),
            client,
            basic,
            tokens: BoundedMap::new(MAX_TOKENS, MAX_TOKEN_TTL),
            timeouts: settings.timeouts,
            health: Mutex::new(Health::default()),
            block_after: settings.auto_block_after,
            block_for: settings.auto_block_for,
            latency: prometheus_client::metrics::histogram::Histogram::new([]),
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The image's name at the remote: Docker Hub keeps official images under `library/`.
    pub fn remote_name(&self, image: &ImageName) -> String {
        if self.docker_hub && !image.as_str().contains('/') {
            format!("library/{image}")
        } else {
            image.to_string()
        }
    }

    /// Health for the admin API.
    pub fn status(&self) -> serde_json::Value {
        let h = lock(&self.health);
        let blocked = h
            .blocked_until
            .filter(|t| *t > Instant::now())
            .map(|t| (t - Instant::now()).as_secs());
        let state = match (blocked, h.consecutive_failures) {
            (Some(_), _) => "blocked",
            (None, 0) => "healthy",
            (None, _) => "failing",
        };
        serde_json::json!({
            "remote": self.base,
            "state": state,
            "consecutive_failures": h.consecutive_failures,
            "blocked_for_seconds": blocked,
            "last_error": h.last_error,
        })
    }

    fn failed(&self, why: &str) {
        let mut h = lock(&self.health);
        h.consecutive_failures += 1;
        h.last_error = Some(why.to_owned());
        if h.consecutive_failures >= self.block_after
            && h.blocked_until.is_none_or(|t| t <= Instant::now())
        {
            h.blocked_until = Some(Instant::now() + self.block_for);
            tracing::warn!(remote = %self.base, failures = h.consecutive_failures, seconds = self.block_for.as_secs(),
                "remote auto-blocked after repeated failures");
        }
    }

    fn succeeded(&self) {
        let mut h = lock(&self.health);
        h.consecutive_failures = 0;
        h.blocked_until = None;
    }

    fn check_blocked(&self) -> Result<(), RemoteError> {
        let h = lock(&self.health);
        match h.blocked_until {
            Some(t) if t > Instant::now() => Err(RemoteError::Blocked {
                url: self.base.clone(),
                secs: (t - Instant::now()).as_secs() + 1,
                failures: h.consecutive_failures,
            }),
            _ => Ok(()),
        }
    }

    /// Records the time to response headers in `latency` (the repository's series).
    pub fn observed(mut self, latency: prometheus_client::metrics::histogram::Histogram) -> Self {
        self.latency = latency;
        self
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response<Incoming>, String> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::USER_AGENT, "berth-proxy-repository");
        if let Some(a) = accept {
            b = b.header(header::ACCEPT, a);
        }
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let req = b.body(Empty::new()).map_err(|e| e.to_string())?;
        let wait = self.timeouts.response;
        let started = Instant::now();
        match tokio::time::timeout(wait, self.client.request(req)).await {
            Ok(Ok(r)) => {
                self.latency.observe(started.elapsed().as_secs_f64());
                Ok(r)
            }
            Ok(Err(e)) => Err(format!("{e:?}").chars().take(300).collect()),
            Err(_) => Err(format!(
                "no response to {method} within {} s",
                wait.as_secs_f32()
            )),
        }
    }

    /// Reads a small body whole: at most `limit` bytes, no pause longer than the idle timeout.
    pub async fn read_body(
        &self,
        resp: Response<Incoming>,
        limit: usize,
        what: &str,
    ) -> Result<Bytes, RemoteError> {
        let fail = |reason: String| RemoteError::Body {
            url: self.base.clone(),
            what: what.to_owned(),
            reason,
        };
        let mut stream = self.body_stream(resp);
        let mut out = BytesMut::new();
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| fail(e.to_string()))?;
            if out.len() + piece.len() > limit {
                return Err(fail(format!("larger than {limit} bytes")));
            }
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    /// A body as a stream whose pieces must each arrive within the idle timeout.
    pub fn body_stream(&self, resp: Response<Incoming>) -> ByteStream {
        let idle = self.timeouts.idle;
        let data = resp.into_body().into_data_stream();
        let guarded = futures_util::stream::unfold(Some(data), move |state| async move {
            let mut data = state?;
            match tokio::time::timeout(idle, data.next()).await {
                Ok(Some(Ok(b))) => Some((Ok(b), Some(data))),
                Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("the remote paused for more than {} s", idle.as_secs_f32()),
                    )),
                    None,
                )),
            }
        });
        Box::pin(guarded)
    }

    /// Fetches a bearer token for `scope` from the challenge's realm.
    async fn token(
        &self,
        params: &HashMap<String, String>,
        scope: &str,
    ) -> Result<String, RemoteError> {
        let auth_err = |reason: String| RemoteError::Auth {
            url: self.base.clone(),
            reason,
        };
        let realm = params
            .get("realm")
            .ok_or_else(|| auth_err("Bearer challenge without a realm".into()))?;
        let query = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair(
                "scope",
                params.get("scope").map(String::as_str).unwrap_or(scope),
            );
            q.finish()
        };
        let url = format!("{realm}?{query}");
        let resp = self
            .send(&Method::GET, &url, None, self.basic.as_deref())
            .await
            .map_err(|e| RemoteError::Unreachable {
                url: realm.clone(),
                reason: e,
            })?;
        if resp.status() != StatusCode::OK {
            return Err(auth_err(format!(
                "token realm {realm} answered {}",
                resp.status()
            )));
        }
        let body = self
            .read_body(resp, MAX_TOKEN_BODY, "a token")
            .await
            .map_err(|e| auth_err(e.to_string()))?;
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| auth_err(format!("token response: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| auth_err("no token in the realm's answer".into()))?;
        let ttl = v["expires_in"].as_u64().unwrap_or(60).max(10);
        self.tokens.insert(
            scope.to_owned(),
            (
                token.to_owned(),
                Instant::now() + Duration::from_secs(ttl - 5),
            ),
        );
        Ok(token.to_owned())
    }

    /// Sends a request for `path` (starting with `/v2/` or `/v1/`), authenticating as the remote
    /// asks. 429 and 5xx answers count as failures for auto-blocking but are returned.
    pub(super) async fn request(
        &self,
        method: Method,
        path: &str,
        accept: Option<&str>,
        scope: &str,
    ) -> Result<Response<Incoming>, RemoteError> {
        self.check_blocked()?;
        let url = format!("{}{path}", self.base);
        let cached = self
            .tokens
            .get(&scope.to_owned())
            .filter(|(_, exp)| *exp > Instant::now())
            .map(|(t, _)| format!("Bearer {t}"));
        let mut auth = cached;
        for attempt in 0..2 {
            let resp = match self.send(&method, &url, accept, auth.as_deref()).await {
                Ok(r) => r,
                Err(reason) => {
                    self.failed(&reason);
                    return Err(RemoteError::Unreachable {
                        url: self.base.clone(),
                        reason,
                    });
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                if let Some(params) = crate::net::bearer_challenge(resp.headers()) {
                    self.tokens.remove(&scope.to_owned());
                    let token = self.token(&params, scope).await?;
                    auth = Some(format!("Bearer {token}"));
                    continue;
                }
                if self.basic.is_some() && auth.as_deref() != self.basic.as_deref() {
                    auth = self.basic.clone();
                    continue;
                }
            }
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                self.failed(&format!("{method} {path}: {status}"));
            } else {
                self.succeeded();
            }
            return Ok(resp);
        }
        Err(RemoteError::Auth {
            url: self.base.clone(),
            reason: "still unauthorized after authenticating".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> ProxySettings {
        ProxySettings::new(url)
    }

    #[test]
    fn docker_hub_keeps_official_images_under_library() {
        let hub = Remote::new(&settings("https://registry-1.docker.io")).unwrap();
        let one: ImageName = "alpine".parse().unwrap();
        let two: ImageName = "bitnami/redis".parse().unwrap();
        assert_eq!(hub.remote_name(&one), "library/alpine");
        assert_eq!(hub.remote_name(&two), "bitnami/redis");
        let other = Remote::new(&settings("https://ghcr.io")).unwrap();
        assert_eq!(other.remote_name(&one), "alpine");
    }
}
