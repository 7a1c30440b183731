//! Prometheus metrics of the core, exposed on their own listener (`metrics: { listen }`), off
//! the connector ports: requests by repository, route, method and status with latency
//! histograms and bytes in and out; uploads in progress, blocked remotes and the blob store's
//! totals (read when scraped) and the manifest cache's hits, misses and bytes; proxy cache hits and misses and remote latency; garbage
//! collection runs and bytes freed; failed logins; direct-HTTPS connector
//! certificates' expiry (read when scraped) and reloads, named like the edge's so one alert
//! rule shape covers both processes.
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
pub struct EndpointLabels {
    pub endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointResult {
    pub endpoint: String,
    pub result: String,
}

/// Event delivery, per notifications endpoint.
pub struct NotificationMetrics {
    events: Family<EndpointResult, Counter>,
    failures: Family<EndpointLabels, Counter>,
    pending: Family<EndpointLabels, Gauge>,
    latency: Family<EndpointLabels, Histogram>,
}

impl NotificationMetrics {
    fn register(registry: &mut Registry) -> NotificationMetrics {
        let m = NotificationMetrics {
            events: Family::default(),
            failures: Family::default(),
            pending: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
        };
        registry.register(
            "notification_events",
            "Events by endpoint and result (delivered, dropped when the queue was full)",
            m.events.clone(),
        );
        registry.register(
            "notification_failures",
            "Failed delivery attempts (each is retried with back-off)",
            m.failures.clone(),
        );
        registry.register(
            "notification_pending",
            "Events queued for delivery",
            m.pending.clone(),
        );
        registry.register(
            "notification_delivery_duration_seconds",
            "Time for an endpoint to answer a delivery",
            m.latency.clone(),
        );
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    pub repository: String,
    /// The certificate's subject (or its SNI names when it has several).
    pub certificate: String,
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub repository: String,
    pub result: String,
}

/// Certificates the core serves itself (direct-HTTPS connectors).
pub struct CertMetrics {
    expiry: Family<CertLabels, Gauge>,
    reloads: Family<ReloadLabels, Counter>,
}

impl CertMetrics {
    fn register(registry: &mut Registry) -> CertMetrics {
        let m = CertMetrics {
            expiry: Family::default(),
            reloads: Family::default(),
        };
        registry.register(
            "certificate_expiry_seconds",
            "Seconds until a direct-HTTPS connector's certificate expires (negative once expired)",
            m.expiry.clone(),
        );
        registry.register(
            "certificate_reloads",
            "Direct-HTTPS certificate reloads by result",
            m.reloads.clone(),
        );
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub repository: String,
    /// `manifest` or `blob`.
    pub kind: String,
    /// `hit` (answered from the cache, a remembered "not found" included), `revalidated` (a
    /// cached tag the remote confirmed), `stale` (a cached tag served while the remote
    /// failed) or `miss` (fetched from the remote).
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RepoLabels {
    pub repository: String,
}

/// Pull-through caches: where answers came from, and how long the remote takes.
struct ProxyMetrics {
    cache: Family<CacheLabels, Counter>,
    remote_latency: Family<RepoLabels, Histogram>,
}

impl ProxyMetrics {
    fn register(registry: &mut Registry) -> ProxyMetrics {
        let m = ProxyMetrics {
            cache: Family::default(),
            remote_latency: Family::new_with_constructor(|| {
                // 1 ms .. ~32 s: a remote across the internet, token round trips included.
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
        };
        registry.register(
            "proxy_cache_requests",
            "Proxy repository manifest and blob reads by where the answer came from",
            m.cache.clone(),
        );
        registry.register(
            "proxy_remote_request_duration_seconds",
            "Time from a request to the remote to its response headers",
            m.remote_latency.clone(),
        );
        m
    }
}

/// One proxy repository's series, looked up once when it is built: counting a cached pull
/// is then one atomic add.
#[derive(Clone, Debug)]
pub struct ProxyCounters {
    pub manifest_hit: Counter,
    pub manifest_revalidated: Counter,
    pub manifest_stale: Counter,
    pub manifest_miss: Counter,
    pub blob_hit: Counter,
    pub blob_miss: Counter,
    pub remote_latency: Histogram,
}

/// What the blob store holds, read from the metadata store when scraped (at most every
/// [`TOTALS_MAX_AGE`]: on a large PostgreSQL the count is a table scan).
struct StoreMetrics {
    blobs: Gauge,
    bytes: Gauge,
    read_at: std::sync::Mutex<Option<std::time::Instant>>,
    manifest_cache: Family<ResultLabels, Counter>,
    manifest_cache_bytes: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// The manifest cache's handles: reads answered from memory and not, and the bytes held.
#[derive(Clone)]
pub struct ManifestCacheMetrics {
    pub hit: Counter,
    pub miss: Counter,
    pub bytes: Gauge,
}

/// How long the store's totals are reused between scrapes.
pub const TOTALS_MAX_AGE: Duration = Duration::from_secs(30);

impl StoreMetrics {
    fn register(registry: &mut Registry) -> StoreMetrics {
        let m = StoreMetrics {
            blobs: Gauge::default(),
            bytes: Gauge::default(),
            read_at: std::sync::Mutex::new(None),
            manifest_cache: Family::default(),
            manifest_cache_bytes: Gauge::default(),
        };
        registry.register(
            "manifest_cache_requests",
            "Manifest reads by whether memory held the bytes (hit) or the blob store was read (miss)",
            m.manifest_cache.clone(),
        );
        registry.register(
            "manifest_cache_bytes",
            "Bytes of manifests held in memory",
            m.manifest_cache_bytes.clone(),
        );
        registry.register(
            "blob_store_blobs",
            "Blobs and manifests in the blob store (each once, however many repositories hold it)",
            m.blobs.clone(),
        );
        registry.register(
            "blob_store_bytes",
            "Bytes of the blobs and manifests in the blob store",
            m.bytes.clone(),
        );
        m
    }
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
