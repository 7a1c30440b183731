//! Prometheus metrics of the edge, served on its own listener (`metrics: { listen }`), never on
//! a TLS port: requests per listener, upstream and status with latency histograms; TLS
//! handshakes and failures by reason; upstream health; certificate expiry per certificate;
//! certificate reloads and ACME failures.
//!
//! One process-wide set ([`global`]). The request path only bumps atomics in families whose
//! labels are bounded by the configuration (listener names, upstream addresses) or by fixed
//! lists (status codes, failure reasons). Gauges that describe state — upstream health and
//! certificate expiry — are refreshed by the maintenance loop, and expiry once more just before
//! each scrape so "seconds left" is never a tick stale.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: String,
    pub upstream: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub listener: String,
    /// The certificate's subject (or its SNI names when it has several).
    pub certificate: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub listener: String,
    pub result: String,
}

/// Every metric of the edge.
pub struct EdgeMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<ListenerLabels, Histogram>,
    pub handshakes: Family<ListenerLabels, Counter>,
    pub handshake_failures: Family<ReasonLabels, Counter>,
    pub upstream_up: Family<UpstreamLabels, Gauge>,
    pub cert_expiry: Family<CertLabels, Gauge>,
    pub cert_reloads: Family<ReloadLabels, Counter>,
    pub acme_failures: Family<ListenerLabels, Counter>,
}

impl EdgeMetrics {
    fn new() -> EdgeMetrics {
        let mut r = Registry::with_prefix("berth_edge");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register("http_requests", "Requests proxied", requests.clone());
        let latency = Family::<ListenerLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms .. ~8 s, as the core's.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        r.register(
            "http_request_duration_seconds",
            "Time from request headers to the end of the response",
            latency.clone(),
        );
        let handshakes = Family::<ListenerLabels, Counter>::default();
        r.register(
            "tls_handshakes",
            "Completed TLS handshakes",
            handshakes.clone(),
        );
        let handshake_failures = Family::<ReasonLabels, Counter>::default();
        r.register(
            "tls_handshake_failures",
            "Failed TLS handshakes by reason",
            handshake_failures.clone(),
        );
        let upstream_up = Family::<UpstreamLabels, Gauge>::default();
        r.register(
            "upstream_up",
            "1 if the core connector passes its health check",
            upstream_up.clone(),
        );
        let cert_expiry = Family::<CertLabels, Gauge>::default();
        r.register(
            "certificate_expiry_seconds",
            "Seconds until the served certificate expires (negative once expired)",
            cert_expiry.clone(),
        );
        let cert_reloads = Family::<ReloadLabels, Counter>::default();
        r.register(
            "certificate_reloads",
            "Certificate reloads by result",
            cert_reloads.clone(),
        );
        let acme_failures = Family::<ListenerLabels, Counter>::default();
        r.register(
            "acme_failures",
            "Failed ACME orders or renewals",
            acme_failures.clone(),
        );
        EdgeMetrics {
            registry: r,
            requests,
            latency,
            handshakes,
            handshake_failures,
            upstream_up,
            cert_expiry,
            cert_reloads,
            acme_failures,
        }
    }

    /// The text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }

    /// Records one certificate's remaining lifetime.
    pub fn set_cert_expiry(&self, labels: CertLabels, not_after_unix: i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.cert_expiry
            .get_or_create(&labels)
            .set(not_after_unix - now);
    }
}

/// One listener's request metrics, with handles cached so the request path neither allocates
/// label strings nor hashes them: the latency histogram, and a counter per (upstream, status).
pub struct ListenerMetrics {
    name: String,
    latency: Histogram,
    counters:
        std::sync::RwLock<std::collections::HashMap<(Option<std::net::SocketAddr>, u16), Counter>>,
}

impl ListenerMetrics {
    pub fn new(name: &str) -> ListenerMetrics {
        let latency = global()
            .latency
            .get_or_create(&ListenerLabels {
                listener: name.to_owned(),
            })
            .clone();
        ListenerMetrics {
            name: name.to_owned(),
            latency,
            counters: Default::default(),
        }
    }

    /// Counts one request.
    pub fn record(&self, upstream: Option<std::net::SocketAddr>, status: u16, seconds: f64) {
        self.latency.observe(seconds);
        let key = (upstream, status);
        let cached = self
            .counters
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let counter = cached.unwrap_or_else(|| {
            let c = global()
                .requests
                .get_or_create(&RequestLabels {
                    listener: self.name.clone(),
                    upstream: upstream.map_or_else(|| "-".to_owned(), |u| u.to_string()),
                    status: status.to_string(),
                })
                .clone();
            self.counters
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, c.clone());
            c
        });
        counter.inc();
    }
}

/// The process-wide metrics.
pub fn global() -> &'static EdgeMetrics {
    static METRICS: OnceLock<EdgeMetrics> = OnceLock::new();
    METRICS.get_or_init(EdgeMetrics::new)
}

/// A failed handshake's reason, from pingora's error text, as one of a fixed set of labels.
pub fn handshake_failure_reason(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    const TABLE: [(&str, &str); 10] = [
        ("acme tls-alpn-01", "acme_validation"),
        ("plain http", "plain_http"),
        ("timeout", "timeout"),
        ("timed out", "timeout"),
        ("unknownca", "client_rejected_certificate"),
        ("badcertificate", "client_rejected_certificate"),
        ("certificateunknown", "client_rejected_certificate"),
        ("no server certificate", "no_certificate"),
        ("peer is incompatible", "no_shared_protocol"),
        ("handshakefailure", "no_shared_protocol"),
    ];
    for (needle, reason) in TABLE {
        if m.contains(needle) {
            return reason;
        }
    }
    if m.contains("eof") || m.contains("reset") || m.contains("broken pipe") {
        return "connection_closed";
    }
    "other"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_bounded() {
        let r = handshake_failure_reason(
            "TLSHandshakeFailure context: TLS accept() failed: received fatal alert: UnknownCA",
        );
        assert_eq!(r, "client_rejected_certificate");
        assert_eq!(
            handshake_failure_reason(
                "InvalidHTTPHeader context: plain HTTP sent to a TLS listener"
            ),
            "plain_http"
        );
        assert_eq!(
            handshake_failure_reason("tls handshake eof"),
            "connection_closed"
        );
        assert_eq!(handshake_failure_reason("something new"), "other");
    }

    #[test]
    fn exposition_has_the_families() {
        let m = EdgeMetrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                listener: "l".into(),
                upstream: "127.0.0.1:1".into(),
                status: "200".into(),
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("berth_edge_http_requests_total{listener=\"l\""),
            "{text}"
        );
        assert!(
            text.contains("# TYPE berth_edge_certificate_expiry_seconds gauge"),
            "{text}"
        );
    }
}
