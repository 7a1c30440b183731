//! Prometheus metrics of the core, exposed on their own listener (`metrics: { listen }`), off
//! the connector ports: requests by repository, route, method and status with latency
//! histograms and bytes in and out; uploads in progress, blocked remotes and the blob store's
//! totals (read when scraped) and the manifest cache's hits, misses and bytes; proxy cache
//! hits and misses and remote latency; garbage collection runs and bytes freed; failed logins;
//! direct-HTTPS connector certificates' expiry (read when scraped) and reloads, named like the
//! edge's so one alert rule shape covers both processes. The groups beyond the request
//! counters are in `groups.rs`.
//!
//! One process-wide set ([`global`]): the request path only increments atomics, and labels are
//! bounded — repository names come from the configuration, routes and methods from fixed lists.

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

mod groups;

pub use groups::*;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub repository: String,
    pub route: String,
    pub method: String,
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub repository: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GcLabels {
    pub dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CleanupLabels {
    pub repository: String,
    /// `tag` or `manifest`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UploadCapLabels {
    pub repository: String,
    /// Evictions: `empty` or `idle`; refusals: `per_client` or `repository`.
    pub reason: String,
}

/// Every metric of the core.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub bytes_in: Family<RouteLabels, Counter>,
    pub bytes_out: Family<RouteLabels, Counter>,
    pub uploads_in_progress: Gauge,
    pub remotes_blocked: Gauge,
    pub gc_runs: Family<GcLabels, Counter>,
    pub gc_bytes_freed: Counter,
    pub cleanup_runs: Family<RepoLabels, Counter>,
    pub cleanup_removed: Family<CleanupLabels, Counter>,
    pub failed_logins: Counter,
    /// Logins the LDAP directory or an OIDC issuer could not decide (unreachable, timed out,
    /// refused our bind).
    pub directory_failures: Counter,
    /// Tags replication copied, the blob bytes it moved, and the tags (or runs) that failed.
    pub replicated_images: Counter,
    pub replicated_bytes: Counter,
    pub replication_failures: Counter,
    /// Seconds from a push to its on-push copy, the latest batch's oldest push.
    pub replication_push_lag:
        prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Upload sessions the cap dropped to make room, and new ones it refused.
    pub upload_evictions: Family<UploadCapLabels, Counter>,
    pub upload_refusals: Family<UploadCapLabels, Counter>,
    notifications: NotificationMetrics,
    certs: CertMetrics,
    proxy: ProxyMetrics,
    store: StoreMetrics,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests served", requests.clone());
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms .. ~8 s.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request headers to response headers",
            latency.clone(),
        );
        let bytes_in = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_request_bytes",
            "Request body bytes (by Content-Length)",
            bytes_in.clone(),
        );
        let bytes_out = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_response_bytes",
            "Response body bytes (by Content-Length)",
            bytes_out.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Open upload sessions",
            uploads_in_progress.clone(),
        );
        let remotes_blocked = Gauge::default();
        registry.register(
            "proxy_remotes_blocked",
            "Proxy repositories whose remote is auto-blocked",
            remotes_blocked.clone(),
        );
        let gc_runs = Family::<GcLabels, Counter>::default();
        registry.register("gc_runs", "Garbage collections run", gc_runs.clone());
        let gc_bytes_freed = Counter::default();
        registry.register(
            "gc_freed_bytes",
            "Bytes garbage collection deleted",
            gc_bytes_freed.clone(),
        );
        let cleanup_runs = Family::<RepoLabels, Counter>::default();
        registry.register(
            "cleanup_runs",
            "Cleanup policy runs (not dry) per repository",
            cleanup_runs.clone(),
        );
        let cleanup_removed = Family::<CleanupLabels, Counter>::default();
        registry.register(
            "cleanup_removed",
            "Tags and manifests cleanup policies and cache eviction removed",
            cleanup_removed.clone(),
        );
        let failed_logins = Counter::default();
        registry.register(
            "failed_logins",
            "Logins refused (wrong password or token)",
            failed_logins.clone(),
        );
        let directory_failures = Counter::default();
        registry.register(
            "directory_failures",
            "Logins the LDAP directory or an OIDC issuer could not decide (unreachable, timed out, bind refused)",
            directory_failures.clone(),
        );
        let [replicated_images, replicated_bytes, replication_failures] =
            [(); 3].map(|_| Counter::default());
        for (name, help, c) in [
            (
                "replicated_images",
                "Tags replication copied to their destination",
                &replicated_images,
            ),
            (
                "replicated_bytes",
                "Blob bytes replication copied",
                &replicated_bytes,
            ),
            (
                "replication_failures",
                "Tags replication could not copy, and runs that failed whole",
                &replication_failures,
            ),
        ] {
            registry.register(name, help, c.clone());
        }
        let replication_push_lag =
            prometheus_client::metrics::gauge::Gauge::<f64, std::sync::atomic::AtomicU64>::default(
            );
        registry.register(
            "replication_push_lag_seconds",
            "Seconds from a push to its on-push replication (the latest batch's oldest push)",
            replication_push_lag.clone(),
        );
        let upload_evictions = Family::<UploadCapLabels, Counter>::default();
        registry.register(
            "upload_sessions_evicted",
            "Upload sessions the session cap dropped to make room (empty first, then idle)",
            upload_evictions.clone(),
        );
        let upload_refusals = Family::<UploadCapLabels, Counter>::default();
        registry.register(
            "upload_sessions_refused",
            "New upload sessions refused because every candidate was receiving bytes",
            upload_refusals.clone(),
        );
        let notifications = NotificationMetrics::register(&mut registry);
        let certs = CertMetrics::register(&mut registry);
        let proxy = ProxyMetrics::register(&mut registry);
        let store = StoreMetrics::register(&mut registry);
        Metrics {
            proxy,
            store,
            notifications,
            certs,
            registry,
            requests,
            latency,
            bytes_in,
            bytes_out,
            uploads_in_progress,
            remotes_blocked,
            gc_runs,
            gc_bytes_freed,
            cleanup_runs,
            cleanup_removed,
            failed_logins,
            directory_failures,
            replicated_images,
            replicated_bytes,
            replication_failures,
            replication_push_lag,
            upload_evictions,
            upload_refusals,
        }
    }

    /// Counts one served request.
    pub fn request(
        &self,
        route: RouteLabels,
        method: &str,
        status: u16,
        took: Duration,
        sizes: (u64, u64),
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                repository: route.repository.clone(),
                route: route.route.clone(),
                method: method.to_owned(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&route)
            .observe(took.as_secs_f64());
        if sizes.0 > 0 {
            self.bytes_in.get_or_create(&route).inc_by(sizes.0);
        }
        if sizes.1 > 0 {
            self.bytes_out.get_or_create(&route).inc_by(sizes.1);
        }
    }

    /// The series of proxy repository `repository`.
    pub fn proxy_counters(&self, repository: &str) -> ProxyCounters {
        let counter = |kind: &str, result: &str| {
            let labels = CacheLabels {
                repository: repository.to_owned(),
                kind: kind.to_owned(),
                result: result.to_owned(),
            };
            self.proxy.cache.get_or_create(&labels).clone()
        };
        let latency = RepoLabels {
            repository: repository.to_owned(),
        };
        ProxyCounters {
            manifest_hit: counter("manifest", "hit"),
            manifest_revalidated: counter("manifest", "revalidated"),
            manifest_stale: counter("manifest", "stale"),
            manifest_miss: counter("manifest", "miss"),
            blob_hit: counter("blob", "hit"),
            blob_miss: counter("blob", "miss"),
            remote_latency: self.proxy.remote_latency.get_or_create(&latency).clone(),
        }
    }

    /// Whether the store's totals are older than [`TOTALS_MAX_AGE`]; if so, the caller is
    /// the one to read them now (others keep the last figures meanwhile).
    pub fn store_totals_due(&self) -> bool {
        let Ok(mut at) = self.store.read_at.lock() else {
            return false;
        };
        let now = std::time::Instant::now();
        if at.is_some_and(|t| now.duration_since(t) < TOTALS_MAX_AGE) {
            return false;
        }
        *at = Some(now);
        true
    }

    pub fn set_store_totals(&self, (blobs, bytes): (u64, u64)) {
        self.store
            .blobs
            .set(i64::try_from(blobs).unwrap_or(i64::MAX));
        self.store
            .bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Handles for the manifest cache, looked up once.
    pub fn manifest_cache(&self) -> ManifestCacheMetrics {
        let result = |r: &str| {
            self.store
                .manifest_cache
                .get_or_create(&ResultLabels { result: r.into() })
                .clone()
        };
        ManifestCacheMetrics {
            hit: result("hit"),
            miss: result("miss"),
            bytes: self.store.manifest_cache_bytes.clone(),
        }
    }

    /// Counts `n` events with a delivery result for an endpoint.
    pub fn notification_event(&self, endpoint: &str, result: &str, n: usize) {
        let labels = EndpointResult {
            endpoint: endpoint.to_owned(),
            result: result.to_owned(),
        };
        self.notifications
            .events
            .get_or_create(&labels)
            .inc_by(n as u64);
    }

    pub fn notification_failure(&self, endpoint: &str) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.notifications.failures.get_or_create(&labels).inc();
    }

    /// The pending gauge of an endpoint, to keep: setting it then costs no label lookup.
    pub fn notification_pending_gauge(&self, endpoint: &str) -> Gauge {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.notifications.pending.get_or_create(&labels).clone()
    }

    pub fn notification_latency(&self, endpoint: &str, took: Duration) {
        let labels = EndpointLabels {
            endpoint: endpoint.to_owned(),
        };
        self.notifications
            .latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Replaces the certificate expiry gauges with what `entries` (the live inventory) says, so
    /// a connector that closed leaves no stale series behind.
    pub fn set_certificates(&self, entries: &[berth_certs::CertEntry], now_unix: i64) {
        self.certs.expiry.clear();
        for e in entries {
            let (Some(info), Some(certificate)) = (&e.info, e.metric_name()) else {
                continue;
            };
            let labels = CertLabels {
                repository: e.listener.clone(),
                certificate,
                source: e.source.as_str().to_owned(),
            };
            self.certs
                .expiry
                .get_or_create(&labels)
                .set(info.not_after_unix.saturating_sub(now_unix));
        }
    }

    /// Counts one reload of a repository's certificate files.
    pub fn certificate_reload(&self, repository: &str, ok: bool) {
        let labels = ReloadLabels {
            repository: repository.to_owned(),
            result: if ok { "ok" } else { "error" }.to_owned(),
        };
        self.certs.reloads.get_or_create(&labels).inc();
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

/// The core's metrics.
pub fn global() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// The content type of [`Metrics::encode`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
