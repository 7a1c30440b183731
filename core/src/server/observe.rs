//! What the router tells the metrics ([`crate::metrics`]) about each request, and the
//! probes: `/metrics` and `/certs` (on the metrics listener only), `/healthz` (the process
//! answers) and `/readyz` (the metadata database and the blob store answer), on the metrics
//! listener and on the main port outside the context path, where orchestrators expect them.
//! `/certs` is the edge's inventory document for the core's direct-HTTPS connectors, so
//! `berth-proxy certs --core ADDR` shows both processes in one table.

use http::request::Parts;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

use super::port::Port;
use crate::api::route::{self, Route};
use crate::http::{response, Body};
use crate::metrics::{self, RouteLabels};
use crate::oci::Digest;
use crate::registry::Registry;

/// Bounded labels for a request: the repository only if it is configured, the route from a
/// fixed list.
pub fn labels(reg: &Registry, port: &Port, path: &str) -> RouteLabels {
    let parsed = route::parse(path);
    let name = match parsed {
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. }
        | Route::Referrers { name, .. } => Some(name),
        _ => None,
    };
    let route = match parsed {
        Route::Base => "base",
        Route::Catalog => "catalog",
        Route::Tags { .. } => "tags",
        Route::Manifest { .. } => "manifest",
        Route::Blob { .. } => "blob",
        Route::UploadStart { .. } | Route::Upload { .. } => "upload",
        Route::Referrers { .. } => "referrers",
        Route::V1Ping | Route::V1Search | Route::V1Other => "v1",
        _ if path == "/v2/token" => "token",
        _ if matches!(path, "/metrics" | "/certs" | "/healthz" | "/readyz") => "probe",
        _ if path.starts_with(&format!("{}/api/", reg.context_path)) => "admin",
        _ if path.starts_with(reg.context_path.as_str()) => "ui",
        _ => "other",
    };
    let repository = match port {
        Port::Connector(n) => n.to_string(),
        Port::Main => name
            .and_then(|n| n.split('/').next())
            .filter(|first| {
                first
                    .parse::<crate::oci::RepoName>()
                    .is_ok_and(|r| reg.repos().contains_key(&r))
            })
            .unwrap_or_default()
            .to_owned(),
        Port::Metrics => String::new(),
    };
    RouteLabels {
        repository,
        route: route.to_owned(),
    }
}

/// A method label from a fixed list.
pub fn method_label(m: &http::Method) -> &'static str {
    match m.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "other",
    }
}

/// The `Content-Length` of a message, or 0.
pub fn length(headers: &http::HeaderMap) -> u64 {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Serves a probe path, if `path` is one (`/metrics` and `/certs` only where `metrics` is true).
pub async fn probe(reg: &Registry, req: &Parts, metrics: bool) -> Option<Response<Body>> {
    match req.uri.path() {
        "/healthz" => Some(response::json(StatusCode::OK, &json!({ "status": "ok" }))),
        "/readyz" => Some(ready(reg).await),
        "/metrics" if metrics => Some(scrape(reg).await),
        "/certs" if metrics => Some(response::json(
            StatusCode::OK,
            &json!({ "certificates": reg.control.certificates().await }),
        )),
        _ => None,
    }
}

/// 200 when the metadata database and the blob store both answer, 503 naming what does not.
async fn ready(reg: &Registry) -> Response<Body> {
    let stores = reg.lifecycle.stores();
    let meta = stores
        .meta
        .settings_version()
        .await
        .err()
        .map(|e| e.to_string());
    let probe = Digest::sha256_of(b"berth readiness probe");
    let blobs = stores.blobs.stat(&probe).await.err().map(|e| e.to_string());
    let ok = meta.is_none() && blobs.is_none();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    response::json(
        status,
        &json!({
            "status": if ok { "ready" } else { "not ready" },
            "metadata": meta.unwrap_or_else(|| "ok".into()),
            "blobs": blobs.unwrap_or_else(|| "ok".into()),
        }),
    )
}

/// The exposition, with the gauges read now.
async fn scrape(reg: &Registry) -> Response<Body> {
    let m = metrics::global();
    if let Ok(u) = reg.lifecycle.stores().meta.uploads(None).await {
        m.uploads_in_progress
            .set(i64::try_from(u.len()).unwrap_or(i64::MAX));
    }
    let blocked = reg
        .repos()
        .values()
        .filter(|e| e.repo.status()["state"] == "blocked")
        .count();
    m.remotes_blocked
        .set(i64::try_from(blocked).unwrap_or(i64::MAX));
    if m.store_totals_due() {
        match reg.lifecycle.stores().meta.blob_totals().await {
            Ok(t) => m.set_store_totals(t),
            Err(e) => tracing::warn!(error = %e, "cannot read the blob store's totals"),
        }
    }
    m.set_certificates(
        &reg.control.certificates().await,
        crate::storage::metadata::now(),
    );
    let mut r = Response::new(response::full(m.encode()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    r
}
