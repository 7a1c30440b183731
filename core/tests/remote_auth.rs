//! A proxy repository against a mock remote that speaks the Docker bearer-token flow:
//! challenge, token from the realm with basic credentials, token reuse until expiry, and one
//! retry with a fresh token after a 401. Also auto-blocking after repeated failures.

// Test helpers panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use berth_core::oci::{Digest, ImageName, Reference};
use berth_core::repo::ProxySettings;
use berth_core::repo::{ProxyRepository, Repository};
use berth_core::storage::Stores;

const MANIFEST: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

#[derive(Default)]
struct Mock {
    token_requests: AtomicUsize,
    manifest_requests: AtomicUsize,
    /// The token currently accepted.
    valid: Mutex<String>,
    /// Authorization headers the token endpoint saw.
    token_auth: Mutex<Vec<String>>,
}

async fn serve(
    mock: Arc<Mock>,
    addr: String,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if path == "/token" {
        let n = mock.token_requests.fetch_add(1, Ordering::SeqCst) + 1;
        mock.token_auth.lock().unwrap().push(auth);
        let query = req.uri().query().unwrap_or("").to_owned();
        assert!(
            query.contains("service=mock")
                && query.contains("scope=repository%3Ateam%2Fapp%3Apull"),
            "{query}"
        );
        let token = format!("token-{n}");
        *mock.valid.lock().unwrap() = token.clone();
        let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    let valid = format!("Bearer {}", mock.valid.lock().unwrap());
    if auth != valid {
        let mut r = Response::new(Full::new(Bytes::from_static(b"{}")));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        r.headers_mut().insert(
            "www-authenticate",
            format!(r#"Bearer realm="http://{addr}/token",service="mock",scope="repository:team/app:pull""#).parse().unwrap(),
        );
        return Ok(r);
    }
    mock.manifest_requests.fetch_add(1, Ordering::SeqCst);
    let mut r = Response::new(Full::new(Bytes::from_static(MANIFEST.as_bytes())));
    r.headers_mut().insert(
        "content-type",
        "application/vnd.oci.image.index.v1+json".parse().unwrap(),
    );
    r.headers_mut().insert(
        "docker-content-digest",
        Digest::sha256_of(MANIFEST.as_bytes())
            .to_string()
            .parse()
            .unwrap(),
    );
    Ok(r)
}

async fn start_mock() -> (Arc<Mock>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mock = Arc::new(Mock::default());
    let (m, a) = (mock.clone(), addr.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (m, a) = (m.clone(), a.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| serve(m.clone(), a.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (mock, addr)
}

fn settings(url: String) -> ProxySettings {
    ProxySettings {
        username: Some("alice".into()),
        password: Some("wonderland".into()),
        content_max_age: Duration::from_secs(60),
        metadata_max_age: Duration::from_secs(0),
        negative_cache_ttl: Duration::from_secs(0),
        auto_block_after: 3,
        auto_block_for: Duration::from_secs(60),
        ..ProxySettings::new(url)
    }
}

#[tokio::test]
async fn bearer_tokens_are_fetched_reused_and_refreshed() {
    let (mock, addr) = start_mock().await;
    let repo = ProxyRepository::new(
        "hub".parse().unwrap(),
        Stores::memory().await.unwrap(),
        settings(format!("http://{addr}")),
    )
    .unwrap();
    let image: ImageName = "team/app".parse().unwrap();
    let tag = Reference::Tag("v1".parse().unwrap());

    let m = repo.manifest(&image, &tag).await.unwrap();
    assert_eq!(m.bytes, Bytes::from_static(MANIFEST.as_bytes()));
    assert_eq!(mock.token_requests.load(Ordering::SeqCst), 1);
    // The realm got the remote credentials as basic auth ("alice:wonderland").
    assert_eq!(
        mock.token_auth.lock().unwrap()[0],
        "Basic YWxpY2U6d29uZGVybGFuZA=="
    );

    // metadata_max_age 0: every read revalidates, with the cached token.
    repo.manifest(&image, &tag).await.unwrap();
    assert_eq!(
        mock.token_requests.load(Ordering::SeqCst),
        1,
        "the token was not reused"
    );

    // The remote revokes the token: one 401, one fresh token, one retry, success.
    *mock.valid.lock().unwrap() = "revoked".into();
    repo.manifest(&image, &tag).await.unwrap();
    assert_eq!(mock.token_requests.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_remote_is_blocked_and_says_so() {
    // Nothing listens on this port: every attempt fails to connect.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let repo = ProxyRepository::new(
        "hub".parse().unwrap(),
        Stores::memory().await.unwrap(),
        settings(format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let image: ImageName = "team/app".parse().unwrap();
    for i in 0..3 {
        let e = repo
            .manifest(&image, &Reference::Tag(format!("t{i}").parse().unwrap()))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("unreachable"), "{e}");
    }
    let e = repo
        .manifest(&image, &Reference::Tag("t9".parse().unwrap()))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("blocked"), "{e}");
    let status = repo.status();
    assert_eq!(status["consecutive_failures"], 3);
    assert!(
        status["blocked_for_seconds"].as_u64().unwrap() > 0,
        "{status}"
    );
}
