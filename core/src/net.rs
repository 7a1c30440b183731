//! The outbound HTTPS client shared by proxy remotes and event endpoints: the system's roots
//! plus an optional extra CA file, rustls over ring, HTTP/1.1 (both talk to one host each, so
//! pooled HTTP/1.1 connections are all they need).

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
