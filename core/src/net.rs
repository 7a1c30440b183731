//! The outbound HTTPS client shared by proxy remotes and event endpoints: the system's roots
//! plus an optional extra CA file, rustls over ring, HTTP/1.1 (both talk to one host each, so
//! pooled HTTP/1.1 connections are all they need).

use std::collections::HashMap;
use std::path::Path;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_rustls::rustls;

/// An HTTP(S) client with the given connect timeout; `ca_file` adds trust for a private CA.
pub fn https_client<B>(
    ca_file: Option<&Path>,
    connect_timeout: std::time::Duration,
) -> std::io::Result<Client<HttpsConnector<HttpConnector>, B>>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    https_client_over(ca_file, connect_timeout, HttpConnector::new())
}

/// The same client over `http`, a connector with its own resolver.
pub fn https_client_over<R, B>(
    ca_file: Option<&Path>,
    connect_timeout: std::time::Duration,
    mut http: HttpConnector<R>,
) -> std::io::Result<Client<HttpsConnector<HttpConnector<R>>, B>>
where
    R: Clone,
    HttpsConnector<HttpConnector<R>>: hyper_util::client::legacy::connect::Connect,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    let roots = berth_certs::client_roots(ca_file).map_err(std::io::Error::other)?;
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// The parameters of a response's `WWW-Authenticate: Bearer ...` challenge, if it has one.
pub fn bearer_challenge(headers: &http::HeaderMap) -> Option<HashMap<String, String>> {
    let v = headers.get(http::header::WWW_AUTHENTICATE)?.to_str().ok()?;
    let rest = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(challenge_params(rest))
}

/// The parameters of a `WWW-Authenticate: Bearer ...` challenge (`realm`, `service`,
/// `scope`), keys lower-cased, values unquoted.
pub fn challenge_params(v: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = v;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq]
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = &rest[eq + 1..];
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_owned());
        rest = tail;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let p = challenge_params(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let p = challenge_params("realm=x,service=y");
        assert_eq!((p["realm"].as_str(), p["service"].as_str()), ("x", "y"));
    }
}
