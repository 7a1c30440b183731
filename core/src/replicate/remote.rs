//! The other registry of a rule: any V2 registry, spoken to over the core's HTTPS client
//! ([`crate::net`]) with the Distribution auth dance (Basic, or the bearer-token challenge with
//! a token per scope for the run), and bodies streamed both ways.
//!
//! A request with a streamed body cannot be sent twice, so the dance is done on the small
//! request before it (the upload's `POST`), whose token the `PUT` then carries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::rule::RemoteSettings;
use super::ReplicateError;
use crate::storage::ByteStream;

/// A request body: whole or streamed (the registry's front-ends have their own; this layer
/// sits below them).
pub type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A body of these bytes.
pub fn full(bytes: Bytes) -> Body {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// No body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// The largest manifest, token or listing read.
const MAX_SMALL: usize = 4 * 1024 * 1024;

/// A rule's remote for one run.
pub struct RemoteRegistry {
    base: String,
    client: Client<HttpsConnector<HttpConnector>, Body>,
    basic: Option<String>,
    /// A static bearer token (`token_file`).
    bearer: Option<String>,
    /// Tokens from the remote's realm, by scope, for this run.
    tokens: Mutex<HashMap<String, String>>,
    timeout: Duration,
}

/// An answer with its body read (bounded).
pub struct Small {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl RemoteRegistry {
    /// Builds the client; the secret files are read now (each run: a rotated one is taken).
    pub fn open(s: &RemoteSettings) -> Result<RemoteRegistry, ReplicateError> {
        let client = crate::net::https_client(s.ca_file.as_deref(), s.timeout)
            .map_err(|e| ReplicateError::Config(format!("remote {}: {e}", s.url)))?;
        let read = |p: &std::path::Path| {
            crate::auth::Secret::read(p)
                .map(|s| s.0)
                .map_err(|e| ReplicateError::Config(format!("{}: {e}", p.display())))
        };
        let basic = match (&s.username, &s.password_file) {
            (Some(u), Some(p)) => {
                use base64::Engine as _;
                let pair = format!("{u}:{}", read(p)?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
            _ => None,
        };
        let bearer = s.token_file.as_deref().map(read).transpose()?;
        Ok(RemoteRegistry {
            base: s.url.trim_end_matches('/').to_owned(),
            client,
            basic,
            bearer: bearer.map(|t| format!("Bearer {t}")),
            tokens: Mutex::new(HashMap::new()),
            timeout: s.timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> ReplicateError {
        ReplicateError::Remote(format!("{}: {why}", self.base))
    }

    fn cached(&self, scope: &str) -> Option<String> {
        if let Some(b) = &self.bearer {
            return Some(b.clone());
        }
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.get(scope).cloned().or_else(|| self.basic.clone())
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        auth: Option<&str>,
        body: Body,
    ) -> Result<Response<Incoming>, ReplicateError> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::USER_AGENT, "berth-replication");
        for (k, v) in headers {
            b = b.header(k, v);
        }
        if let Some(a) = auth {
            b = b.header(header::AUTHORIZATION, a);
        }
        let req = b.body(body).map_err(|e| self.unreachable(e))?;
        tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| self.unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| self.unreachable(crate::auth::oidc::issuer::chain(&e)))
    }

    /// Sends a request without a body (or a small one), authenticating as the remote asks.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, String)],
        body: Bytes,
        scope: &str,
    ) -> Result<Response<Incoming>, ReplicateError> {
        let url = if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        };
        let mut auth = self.cached(scope);
        for attempt in 0..2 {
            let body = full(body.clone());
            let resp = self
                .send_once(&method, &url, headers, auth.as_deref(), body)
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || attempt == 1 || self.bearer.is_some() {
                return Ok(resp);
            }
            match crate::net::bearer_challenge(resp.headers()) {
                Some(params) => {
                    let token = self.token(&params, scope).await?;
                    auth = Some(format!("Bearer {token}"));
                }
                None if self.basic.is_some() && auth != self.basic => auth = self.basic.clone(),
                None => return Ok(resp),
            }
        }
        Err(ReplicateError::Denied(format!(
            "{}: still unauthorized",
            self.base
        )))
    }

    /// Sends `body` (streamed, `len` bytes) with the token [`RemoteRegistry::request`] got for
    /// `scope`.
    pub async fn stream(
        &self,
        method: Method,
        url: &str,
        headers: &[(header::HeaderName, String)],
        body: Body,
        scope: &str,
    ) -> Result<Response<Incoming>, ReplicateError> {
        let auth = self.cached(scope);
        self.send_once(&method, url, headers, auth.as_deref(), body)
            .await
    }

    async fn token(
        &self,
        params: &HashMap<String, String>,
        scope: &str,
    ) -> Result<String, ReplicateError> {
        let realm = params
            .get("realm")
            .ok_or_else(|| ReplicateError::Denied("a Bearer challenge without a realm".into()))?;
        let url = {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = params.get("service") {
                q.append_pair("service", service);
            }
            q.append_pair("scope", scope);
            format!("{realm}?{}", q.finish())
        };
        let resp = self
            .send_once(&Method::GET, &url, &[], self.basic.as_deref(), empty())
            .await?;
        let answer = self.read(resp).await?;
        if answer.status != StatusCode::OK {
            return Err(ReplicateError::Denied(format!(
                "the token realm {realm} answered {}",
                answer.status
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&answer.body)
            .map_err(|e| self.unreachable(format!("token answer: {e}")))?;
        let token = v["token"]
            .as_str()
            .or_else(|| v["access_token"].as_str())
            .ok_or_else(|| ReplicateError::Denied("no token in the realm's answer".into()))?
            .to_owned();
        self.tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(scope.to_owned(), token.clone());
        Ok(token)
    }

    /// Reads a small answer whole.
    pub async fn read(&self, resp: Response<Incoming>) -> Result<Small, ReplicateError> {
        let (parts, body) = resp.into_parts();
        let body = http_body_util::Limited::new(body, MAX_SMALL)
            .collect()
            .await
            .map_err(|e| self.unreachable(format!("reading an answer: {e}")))?
            .to_bytes();
        Ok(Small {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// A body as a stream of bytes (errors as I/O errors).
    pub fn body_stream(resp: Response<Incoming>) -> ByteStream {
        use futures_util::TryStreamExt;
        let frames = http_body_util::BodyStream::new(resp.into_body());
        let stream = TryStreamExt::map_err(frames, std::io::Error::other)
            .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
        Box::pin(stream)
    }

    /// An absolute URL for a `Location` the remote gave (a path is on the remote's origin,
    /// whatever path the configured URL has).
    pub fn absolute(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            return location.to_owned();
        }
        let origin_end = self
            .base
            .find("://")
            .and_then(|i| self.base[i + 3..].find('/').map(|j| i + 3 + j))
            .unwrap_or(self.base.len());
        format!("{}{location}", &self.base[..origin_end])
    }
}
