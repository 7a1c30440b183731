//! The ACME client's HTTP transport: hyper over rustls with the system roots plus the
//! configured `ca_file` (an internal CA such as step-ca, or pebble's in tests), and a memory
//! of the CA's last `Retry-After`, which instant-acme does not surface with its errors but
//! RFC 8555 asks clients to honour (rate limits, maintenance).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::Request;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
#[error("ACME CA trust {path}: {reason}")]
pub struct TrustError {
    pub path: String,
    pub reason: String,
}

/// The transport, cheap to clone.
#[derive(Clone)]
pub struct AcmeHttp {
    client: Client<HttpsConnector<HttpConnector>, BodyWrapper<Bytes>>,
    retry_after: Arc<Mutex<Option<SystemTime>>>,
}

impl AcmeHttp {
    pub fn new(ca_file: Option<&Path>) -> Result<AcmeHttp, TrustError> {
        let roots = berth_certs::client_roots(ca_file).map_err(|e| TrustError {
            path: e.path,
            reason: e.reason,
        })?;
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .enable_http1()
            .wrap_connector(http);
        Ok(AcmeHttp {
            client: Client::builder(TokioExecutor::new()).build(https),
            retry_after: Arc::new(Mutex::new(None)),
        })
    }

    /// How long the CA asked to wait, if its last refusal said (and the time is not past).
    pub fn take_retry_after(&self) -> Option<Duration> {
        let at = self
            .retry_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        at.duration_since(SystemTime::now()).ok()
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    match v.parse::<u64>() {
        Ok(secs) => Some(SystemTime::now() + Duration::from_secs(secs)),
        Err(_) => httpdate::parse_http_date(v).ok(),
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let fut = self.client.request(req);
        let memory = self.retry_after.clone();
        Box::pin(async move {
            let rsp = tokio::time::timeout(Duration::from_secs(30), fut)
                .await
                .map_err(|_| instant_acme::Error::Str("the ACME server did not answer in 30 s"))?
                .map_err(|e| instant_acme::Error::Other(Box::new(e)))?;
            let refused = rsp.status().as_u16() == 429 || rsp.status().is_server_error();
            if refused {
                let at = rsp
                    .headers()
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                *memory.lock().unwrap_or_else(|p| p.into_inner()) = at;
            }
            Ok(BytesResponse::from(rsp))
        })
    }
}
