//! Manifest bytes kept in memory by digest, so a manifest GET costs one metadata query and no
//! blob-store read: on the filesystem that read is a hand-off to the blocking pool and back (two
//! thread switches per request), on S3 a round trip to the object store.
//!
//! Content addressing makes the cache safe without invalidation, across any number of cores
//! sharing the stores: the bytes under a digest never change, and every read resolves its tag or
//! digest in the metadata store first, so a deleted manifest (or one another core removed) is
//! never answered from here. Entries are weighed by their length; [`CAPACITY`] bounds the
//! memory whatever the manifests' sizes; `berth_manifest_cache_requests_total{result}` and
//! `berth_manifest_cache_bytes` show how well it serves.

use bytes::Bytes;
use quick_cache::sync::Cache;
use quick_cache::Weighter;

use crate::metrics::{self, ManifestCacheMetrics};
use crate::oci::Digest;

/// Bytes of manifests held at most.
pub const CAPACITY: u64 = 64 << 20;

/// Manifests larger than this are not kept (one would push out hundreds of ordinary ones).
const LARGEST: usize = 1 << 20;

/// An entry weighs its length (and at least 1, as the cache ignores weightless entries).
#[derive(Clone)]
struct ByLength;

impl Weighter<Digest, Bytes> for ByLength {
    fn weight(&self, _digest: &Digest, bytes: &Bytes) -> u64 {
        (bytes.len() as u64).max(1)
    }
}

/// See the module documentation.
pub struct ManifestCache {
    cache: Cache<Digest, Bytes, ByLength>,
    metrics: ManifestCacheMetrics,
}

impl Default for ManifestCache {
    fn default() -> ManifestCache {
        ManifestCache::with_capacity(CAPACITY)
    }
}

impl ManifestCache {
    /// A cache holding at most `bytes` of manifests.
    pub fn with_capacity(bytes: u64) -> ManifestCache {
        // quick_cache sizes its tables by the expected count: ~4 KiB is a usual manifest.
        let items = usize::try_from(bytes / 4096).unwrap_or(usize::MAX).max(16);
        ManifestCache {
            cache: Cache::with_weighter(items, bytes, ByLength),
            metrics: metrics::global().manifest_cache(),
        }
    }

    /// The bytes stored under `digest`, if held.
    pub fn get(&self, digest: &Digest) -> Option<Bytes> {
        let held = self.cache.get(digest);
        match held {
            Some(_) => self.metrics.hit.inc(),
            None => self.metrics.miss.inc(),
        };
        held
    }

    /// Keeps `bytes`, which the caller read from the blob store under `digest`.
    pub fn insert(&self, digest: &Digest, bytes: &Bytes) {
        if bytes.len() <= LARGEST {
            self.cache.insert(digest.clone(), bytes.clone());
            let held = i64::try_from(self.cache.weight()).unwrap_or(i64::MAX);
            self.metrics.bytes.set(held);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_fits_and_skips_what_is_too_large() {
        let cache = ManifestCache::with_capacity(4 << 20);
        let small = Bytes::from_static(b"{\"schemaVersion\":2}");
        let d = Digest::sha256_of(&small);
        assert!(cache.get(&d).is_none());
        cache.insert(&d, &small);
        assert_eq!(cache.get(&d), Some(small));

        let large = Bytes::from(vec![b' '; LARGEST + 1]);
        let l = Digest::sha256_of(&large);
        cache.insert(&l, &large);
        assert!(cache.get(&l).is_none());
    }

    #[test]
    fn stays_within_its_capacity() {
        let cache = ManifestCache::with_capacity(64 << 10);
        for i in 0..1000u32 {
            let bytes = Bytes::from(vec![(i % 251) as u8; 1024 + i as usize]);
            cache.insert(&Digest::sha256_of(&bytes), &bytes);
        }
        assert!(cache.cache.weight() <= 64 << 10, "{}", cache.cache.weight());
        assert!(cache.cache.len() > 10);
    }
}
