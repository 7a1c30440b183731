//! One OpenID Connect issuer as this core knows it: its discovery document and signing keys,
//! fetched when first needed and kept for [`METADATA_TTL`], and its keys fetched again at once
//! when a token names a key not in them (the issuer rotated), at most once per
//! [`REFETCH_EVERY`] so forged key ids cannot turn every login into a fetch.
//!
//! Per core and bounded: one document per configured issuer. Nothing here is shared through
//! the metadata store because every core reads the same public documents from the issuer.
//!
//! Requests go through the core's own HTTPS client ([`crate::net`]): rustls with the system's
//! roots (or `ca_file`), no redirects followed, a deadline on each request, a bounded body.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use openidconnect::core::{CoreJsonWebKeySet, CoreProviderMetadata};
use openidconnect::{IssuerUrl, JsonWebKeySetUrl};

/// How long a discovery document and its keys are used before they are fetched again.
pub const METADATA_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the keys prompted by an unknown key id.
pub const REFETCH_EVERY: Duration = Duration::from_secs(10);
/// The largest discovery document, key set or token response read.
const MAX_BODY: usize = 1024 * 1024;

/// Why the issuer could not be asked.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

type Client = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

/// The HTTP client openidconnect's requests go through.
#[derive(Clone)]
pub struct Http {
    client: Client,
    timeout: Duration,
}

impl Http {
    pub fn new(ca_file: Option<&std::path::Path>, timeout: Duration) -> std::io::Result<Http> {
        Ok(Http {
            client: crate::net::https_client(ca_file, timeout)?,
            timeout,
        })
    }

    /// One request, as openidconnect hands it over; the answer whole (bounded).
    pub async fn call(
        &self,
        req: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, Unreachable> {
        let (parts, body) = req.into_parts();
        let req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let fetch = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| Unreachable(format!("request failed: {e}")))?;
            let (parts, body) = resp.into_parts();
            let bytes = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| Unreachable(format!("reading the answer failed: {e}")))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, bytes.to_vec()))
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| Unreachable(format!("no answer within {:?}", self.timeout)))?
    }

    /// A closure openidconnect takes as its client.
    pub fn as_client(&self) -> impl Fn(http::Request<Vec<u8>>) -> Answer + '_ {
        move |req| {
            let me = self.clone();
            Box::pin(async move { me.call(req).await })
        }
    }
}

/// What the client closure returns.
pub type Answer =
    futures_util::future::BoxFuture<'static, Result<http::Response<Vec<u8>>, Unreachable>>;

struct Known {
    jwks_uri: JsonWebKeySetUrl,
    keys: CoreJsonWebKeySet,
    /// The whole provider document, once a sign-on needed it.
    full: Option<CoreProviderMetadata>,
    fetched: Instant,
    keys_fetched: Instant,
}

impl Known {
    fn fresh(&self) -> bool {
        self.fetched.elapsed() < METADATA_TTL
    }
}

/// What a token issuer's discovery document must hold. CI platforms publish little more
/// (GitHub's and Kubernetes' name no authorization endpoint), so tokens are checked on this
/// alone; a sign-on needs the whole provider document.
#[derive(serde::Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

/// An issuer's documents, fetched when needed.
pub struct Issuer {
    pub url: IssuerUrl,
    http: Http,
    known: tokio::sync::Mutex<Option<Known>>,
}

impl Issuer {
    pub fn new(url: IssuerUrl, http: Http) -> Issuer {
        Issuer {
            url,
            http,
            known: tokio::sync::Mutex::new(None),
        }
    }

    pub fn http(&self) -> &Http {
        &self.http
    }

    fn unreachable(&self, what: &str, e: impl std::fmt::Display) -> Unreachable {
        Unreachable(format!("{what} of {}: {e}", self.url.as_str()))
    }

    /// The provider's whole discovery document with its keys (for a sign-on), fetched if not
    /// known or older than the TTL.
    pub async fn metadata(&self) -> Result<CoreProviderMetadata, Unreachable> {
        let mut known = self.known.lock().await;
        if let Some(k) = known.as_ref().filter(|k| k.fresh()) {
            if let Some(full) = &k.full {
                return Ok(full.clone().set_jwks(k.keys.clone()));
            }
        }
        let client = self.http.as_client();
        let metadata = CoreProviderMetadata::discover_async(self.url.clone(), &client)
            .await
            .map_err(|e| self.unreachable("discovery", chain(&e)))?;
        let now = Instant::now();
        *known = Some(Known {
            jwks_uri: metadata.jwks_uri().clone(),
            keys: metadata.jwks().clone(),
            full: Some(metadata.clone()),
            fetched: now,
            keys_fetched: now,
        });
        tracing::info!(issuer = self.url.as_str(), "OIDC provider discovered");
        Ok(metadata)
    }

    /// The issuer's signing keys, fetched (with the little discovery they need) if not known
    /// or older than the TTL.
    pub async fn keys(&self) -> Result<CoreJsonWebKeySet, Unreachable> {
        let mut known = self.known.lock().await;
        if let Some(k) = known.as_ref().filter(|k| k.fresh()) {
            return Ok(k.keys.clone());
        }
        let url = self
            .url
            .join(".well-known/openid-configuration")
            .map_err(|e| self.unreachable("discovery", e))?;
        let req = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| self.unreachable("discovery", e))?;
        let resp = self.http.call(req).await?;
        if !resp.status().is_success() {
            return Err(self.unreachable("discovery", format!("status {}", resp.status())));
        }
        let doc: Discovery =
            serde_json::from_slice(resp.body()).map_err(|e| self.unreachable("discovery", e))?;
        if doc.issuer != self.url.as_str() {
            let e = format!("the document names issuer {}", doc.issuer);
            return Err(self.unreachable("discovery", e));
        }
        let jwks_uri =
            JsonWebKeySetUrl::new(doc.jwks_uri).map_err(|e| self.unreachable("jwks_uri", e))?;
        let keys = self.fetch_keys(&jwks_uri).await?;
        let now = Instant::now();
        *known = Some(Known {
            jwks_uri,
            keys: keys.clone(),
            full: None,
            fetched: now,
            keys_fetched: now,
        });
        tracing::info!(issuer = self.url.as_str(), "OIDC token issuer discovered");
        Ok(keys)
    }

    async fn fetch_keys(&self, url: &JsonWebKeySetUrl) -> Result<CoreJsonWebKeySet, Unreachable> {
        let client = self.http.as_client();
        CoreJsonWebKeySet::fetch_async(url, &client)
            .await
            .map_err(|e| self.unreachable("keys", chain(&e)))
    }

    /// Fetches the keys again (a token named a key not among them), unless that was done in
    /// the last [`REFETCH_EVERY`]; whether the keys are new.
    pub async fn refetch_keys(&self) -> Result<bool, Unreachable> {
        let mut known = self.known.lock().await;
        let Some(k) = known.as_mut() else {
            return Ok(false);
        };
        if k.keys_fetched.elapsed() < REFETCH_EVERY {
            return Ok(false);
        }
        k.keys_fetched = Instant::now();
        let keys = self.fetch_keys(&k.jwks_uri).await?;
        tracing::info!(
            issuer = self.url.as_str(),
            keys = keys.keys().len(),
            "OIDC keys fetched again"
        );
        k.keys = keys;
        Ok(true)
    }
}

/// An error with its sources, one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut at = e.source();
    while let Some(next) = at {
        s.push_str(": ");
        s.push_str(&next.to_string());
        at = next.source();
    }
    s
}

/// The issuers of a config, one [`Issuer`] each however many rules name it.
pub fn issuers(
    urls: impl IntoIterator<Item = String>,
    ca_file: Option<&PathBuf>,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, Arc<Issuer>>, String> {
    let http = Http::new(ca_file.map(PathBuf::as_path), timeout).map_err(|e| e.to_string())?;
    let mut out = std::collections::HashMap::new();
    for url in urls {
        if out.contains_key(&url) {
            continue;
        }
        let parsed = IssuerUrl::new(url.clone()).map_err(|e| format!("{url}: {e}"))?;
        out.insert(url, Arc::new(Issuer::new(parsed, http.clone())));
    }
    Ok(out)
}
