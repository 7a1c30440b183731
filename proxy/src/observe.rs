//! The edge's metrics listener (`metrics: { listen }`, plain HTTP, never a TLS port):
//! `/metrics` for Prometheus, `/healthz` (the process answers), `/readyz` (every listener has a
//! healthy core to send requests to) and `/certs`, the certificate inventory as JSON — the same
//! records `berth-proxy certs` prints.

use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde::Serialize;

use crate::metrics::{self, CertLabels, UpstreamLabels};
use crate::routing::Routes;
use berth_certs::{CertEntry, Resolver};

/// The prometheus-client exposition's content type.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What the metrics listener reports on.
pub struct EdgeState {
    pub routes: Arc<Routes>,
    pub resolvers: Vec<Arc<Resolver>>,
}

/// One listener's readiness, as `/readyz` reports it.
#[derive(Serialize)]
struct ListenerHealth {
    listener: String,
    healthy_upstreams: usize,
    upstreams: usize,
}

impl EdgeState {
    /// Every certificate served, listener by listener.
    pub fn inventory(&self) -> Vec<CertEntry> {
        self.resolvers.iter().flat_map(|r| r.inventory()).collect()
    }

    /// Refreshes the state gauges: upstream health and certificate expiry.
    pub fn refresh_gauges(&self) {
        let m = metrics::global();
        for pool in self.routes.pools() {
            for (addr, up) in pool.health() {
                m.upstream_up
                    .get_or_create(&UpstreamLabels {
                        upstream: addr.to_string(),
                    })
                    .set(i64::from(up));
            }
        }
        for entry in self.inventory() {
            let (Some(info), Some(certificate)) = (&entry.info, entry.metric_name()) else {
                continue;
            };
            let labels = CertLabels {
                listener: entry.listener.clone(),
                certificate,
                source: entry.source.as_str().to_owned(),
            };
            m.set_cert_expiry(labels, info.not_after_unix);
        }
    }

    fn readiness(&self) -> (bool, Vec<ListenerHealth>) {
        let mut all = true;
        let mut out = Vec::new();
        for l in self.routes.listeners() {
            let health: Vec<_> = l.pools().flat_map(|p| p.health()).collect();
            let healthy = health.iter().filter(|(_, up)| *up).count();
            all &= healthy > 0;
            out.push(ListenerHealth {
                listener: l.name.clone(),
                healthy_upstreams: healthy,
                upstreams: health.len(),
            });
        }
        out.sort_by(|a, b| a.listener.cmp(&b.listener));
        (all, out)
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .body(body)
        .unwrap_or_default()
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Vec<u8>> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    reply(status, "application/json", body)
}

/// The metrics listener's HTTP app.
pub struct MetricsApp {
    pub state: Arc<EdgeState>,
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"GET only\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/metrics" => {
                self.state.refresh_gauges();
                let text = metrics::global().encode();
                reply(StatusCode::OK, OPENMETRICS, text.into_bytes())
            }
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let (ready, listeners) = self.state.readiness();
                let status = if ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(
                    status,
                    &serde_json::json!({ "ready": ready, "listeners": listeners }),
                )
            }
            "/certs" => json(
                StatusCode::OK,
                &serde_json::json!({ "certificates": self.state.inventory() }),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                b"not found: try /metrics, /healthz, /readyz or /certs\n".to_vec(),
            ),
        }
    }
}
