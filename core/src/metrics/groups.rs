//! The metric groups beside the request counters: event delivery per endpoint, certificates,
//! the proxy cache, and the stores (totals read when scraped, the manifest cache). Each group
//! registers itself and hands out handles looked up once.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

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
    pub(super) events: Family<EndpointResult, Counter>,
    pub(super) failures: Family<EndpointLabels, Counter>,
    pub(super) pending: Family<EndpointLabels, Gauge>,
    pub(super) latency: Family<EndpointLabels, Histogram>,
}

impl NotificationMetrics {
    pub(super) fn register(registry: &mut Registry) -> NotificationMetrics {
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
    pub(super) expiry: Family<CertLabels, Gauge>,
    pub(super) reloads: Family<ReloadLabels, Counter>,
}

impl CertMetrics {
    pub(super) fn register(registry: &mut Registry) -> CertMetrics {
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
pub(super) struct ProxyMetrics {
    pub(super) cache: Family<CacheLabels, Counter>,
    pub(super) remote_latency: Family<RepoLabels, Histogram>,
}

impl ProxyMetrics {
    pub(super) fn register(registry: &mut Registry) -> ProxyMetrics {
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
pub(super) struct StoreMetrics {
    pub(super) blobs: Gauge,
    pub(super) bytes: Gauge,
    pub(super) read_at: std::sync::Mutex<Option<std::time::Instant>>,
    pub(super) manifest_cache: Family<ResultLabels, Counter>,
    pub(super) manifest_cache_bytes: Gauge,
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
    pub(super) fn register(registry: &mut Registry) -> StoreMetrics {
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
