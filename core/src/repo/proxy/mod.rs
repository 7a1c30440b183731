//! Proxy repositories: a pull-through cache of a remote registry, as a decorator around a
//! local hosted repository.
//!
//! The local [`HostedRepository`] keeps what was pulled through, with the same rules and the
//! same code as any hosted repository (manifests, tags, referrers, blob links, verified and
//! durable uploads); this module adds only the remote:
//! - manifests by digest and blobs are immutable: once cached they are served locally forever;
//! - a tag is trusted for `metadata_max_age`; then a HEAD (which does not count against Docker
//!   Hub's pull limits) revalidates it, and only a changed digest is fetched again;
//! - when the remote is down, answers 429 or 5xx, or is auto-blocked after repeated failures,
//!   cached content keeps being served (tags from the last good answer); misses get an error
//!   that names the remote. "Not found" answers are remembered for `negative_cache_ttl`;
//! - blobs are fetched once however many clients ask at the same moment (`fetch.rs`), at most
//!   `max_concurrent_fetches` at a time;
//! - clients cannot push: a proxy is read-only.

mod answer;
mod bounded;
mod fetch;
mod pull;
mod remote;
mod settings;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use http::Method;

use super::{Manifest, Page, PushedManifest, RepoError, RepoKind, Repository, Result};
use crate::oci::{Descriptor, Digest, ImageName, Reference, RepoName, Tag};
use crate::repo::{HostedRepository, WritePolicy};
use crate::storage::{ByteStream, Stores};
use answer::Answer;
use bounded::BoundedMap;
use fetch::{Fetch, Outcome};
use pull::{MAX_NEGATIVE, MAX_SMALL_BODY, MAX_TAG_CHECKS, MAX_TAG_LISTS, MAX_TAG_LIST_BODY};
pub use remote::{Remote, RemoteError, MANIFEST_ACCEPT};
pub use settings::{ProxySettings, RemoteTimeouts};

/// Largest manifest accepted from a remote.
const MAX_REMOTE_MANIFEST: usize = crate::oci::manifest::MAX_MANIFEST_BYTES;
/// The client recorded on the upload sessions a proxy fills from its remote.
const PROXY_CLIENT: &str = "berth:proxy-fetch";

pub(super) struct Inner {
    pub(super) name: RepoName,
    /// What was pulled through, kept by the hosted rules.
    pub(super) local: Arc<HostedRepository>,
    pub(super) remote: Remote,
    pub(super) settings: ProxySettings,
    /// Tags confirmed by the remote, for `metadata_max_age` (bounded: MAX_TAG_CHECKS).
    pub(super) tag_checked: BoundedMap<(ImageName, Tag), ()>,
    /// Remote "not found" answers, for `negative_cache_ttl` (bounded: MAX_NEGATIVE).
    pub(super) negative: BoundedMap<String, ()>,
    /// Remote tag lists, reused for `content_max_age` (bounded: MAX_TAG_LISTS).
    pub(super) tag_lists: BoundedMap<ImageName, Vec<String>>,
    /// Blob fetches in progress: an entry lives as long as its fetch task, and each task waits
    /// for a slot below, so the map holds at most one entry per digest some client is waiting
    /// for. Locked only to find or register a fetch, never across I/O.
    pub(super) inflight: Mutex<HashMap<Digest, Arc<Fetch>>>,
    /// Fetches talking to the remote at once (each holds up to 24 MiB of buffers).
    pub(super) fetch_slots: tokio::sync::Semaphore,
    /// Cache hits and misses, remote latency.
    pub(super) counters: crate::metrics::ProxyCounters,
}

/// A pull-through cache of one remote registry.
pub struct ProxyRepository {
    inner: Arc<Inner>,
}

/// The remote could not answer: its rate limit passes through as such, anything else is a
/// remote failure that names it.
pub(super) fn remote_failure(e: RemoteError) -> RepoError {
    match e {
        RemoteError::RateLimited { url, retry_after } => RepoError::RateLimited {
            remote: url,
            retry_after,
        },
        other => RepoError::Remote(other.to_string()),
    }
}

impl ProxyRepository {
    pub fn new(name: RepoName, stores: Stores, settings: ProxySettings) -> std::io::Result<Self> {
        let counters = crate::metrics::global().proxy_counters(name.as_str());
        let remote = Remote::new(&settings)?.observed(counters.remote_latency.clone());
        let local = Arc::new(HostedRepository::new(
            name.clone(),
            stores,
            WritePolicy::AllowRedeploy,
        ));
        Ok(ProxyRepository {
            inner: Arc::new(Inner {
                name,
                local,
                remote,
                tag_checked: BoundedMap::new(MAX_TAG_CHECKS, settings.metadata_max_age),
                negative: BoundedMap::new(MAX_NEGATIVE, settings.negative_cache_ttl),
                tag_lists: BoundedMap::new(MAX_TAG_LISTS, settings.content_max_age),
                inflight: Mutex::new(HashMap::new()),
                fetch_slots: tokio::sync::Semaphore::new(settings.max_concurrent_fetches.max(1)),
                counters,
                settings,
            }),
        })
    }

    fn read_only(&self) -> RepoError {
        RepoError::Denied(format!(
            "{} is a proxy of {}: it is read-only; push to a hosted repository",
            self.inner.name,
            self.inner.url()
        ))
    }

    fn blob_unknown(&self, digest: &Digest) -> RepoError {
        RepoError::BlobUnknown {
            digest: digest.clone(),
            remote: Some(self.inner.url().to_owned()),
        }
    }

    /// The size of an uncached blob, from a fetch in progress or a HEAD to the remote.
    async fn remote_blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64> {
        let i = &self.inner;
        let running = i
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .and_then(|f| f.state.borrow().total);
        if let Some(total) = running {
            return Ok(total);
        }
        let neg = format!("b:{image}:{digest}");
        if i.negative_hit(&neg) {
            return Err(self.blob_unknown(digest));
        }
        match i
            .ask(Method::HEAD, image, &format!("blobs/{digest}"), None)
            .await?
        {
            Answer::Missing => {
                i.remember_missing(neg);
                Err(self.blob_unknown(digest))
            }
            Answer::Found(resp) => resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    RepoError::Remote(format!("remote {} gave no size for blob {digest}", i.url()))
                }),
        }
    }
}

/// A page of a sorted list the remote sent whole.
fn paged(all: Vec<String>, page: &Page) -> Vec<String> {
    all.into_iter()
        .filter(|t| page.after.as_ref().is_none_or(|a| t > a))
        .take(page.limit.unwrap_or(usize::MAX))
        .collect()
}

/// The local answer, or `None` where it says "not here".
fn local<T>(r: Result<T>) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl Repository for ProxyRepository {
    fn name(&self) -> &RepoName {
        &self.inner.name
    }

    fn kind(&self) -> RepoKind {
        RepoKind::Proxy
    }

    async fn blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64> {
        match local(self.inner.local.blob_size(image, digest).await)? {
            Some(size) => Ok(size),
            None => self.remote_blob_size(image, digest).await,
        }
    }

    async fn blob_redirect(&self, image: &ImageName, digest: &Digest) -> Result<Option<String>> {
        // Only what is cached here can be sent to the bucket; the rest streams from the remote.
        let url = local(self.inner.local.blob_redirect(image, digest).await)?.flatten();
        if url.is_some() {
            self.inner.counters.blob_hit.inc();
        }
        Ok(url)
    }

    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        let i = &self.inner;
        if let Some(s) = local(i.local.blob_read(image, digest, start, len).await)? {
            i.counters.blob_hit.inc();
            return Ok(s);
        }
        if i.negative_hit(&format!("b:{image}:{digest}")) {
            i.counters.blob_hit.inc();
            return Err(self.blob_unknown(digest));
        }
        i.counters.blob_miss.inc();
        let f = i.fetch(image, digest);
        let st = f.started().await;
        match st.done {
            None => Ok(i.follow(f, start, start + len)),
            Some(Outcome::Cached) => i.local.blob_read(image, digest, start, len).await,
            Some(Outcome::Missing) => Err(self.blob_unknown(digest)),
            Some(Outcome::Refused(e)) => Err(remote_failure(e)),
            Some(Outcome::Failed(m)) => Err(RepoError::Remote(m)),
        }
    }

    async fn blob_delete(&self, _image: &ImageName, _digest: &Digest) -> Result<()> {
        Err(self.read_only())
    }

    async fn blob_mount(
        &self,
        _image: &ImageName,
        _digest: &Digest,
        _from: &ImageName,
    ) -> Result<bool> {
        Err(self.read_only())
    }

    async fn upload_start(&self, _image: &ImageName, _client: &str) -> Result<String> {
        Err(self.read_only())
    }

    async fn upload_size(&self, _image: &ImageName, _id: &str) -> Result<u64> {
        Err(self.read_only())
    }

    async fn upload_append(
        &self,
        _image: &ImageName,
        _id: &str,
        _offset: Option<u64>,
        _body: ByteStream,
    ) -> Result<u64> {
        Err(self.read_only())
    }

    async fn upload_finish(&self, _image: &ImageName, _id: &str, _digest: &Digest) -> Result<u64> {
        Err(self.read_only())
    }

    async fn upload_cancel(&self, _image: &ImageName, _id: &str) -> Result<()> {
        Err(self.read_only())
    }

    async fn manifest(&self, image: &ImageName, reference: &Reference) -> Result<Manifest> {
        match reference {
            Reference::Tag(t) => self.inner.manifest_by_tag(image, t).await,
            Reference::Digest(d) => self.inner.manifest_by_digest(image, d).await,
        }
    }

    async fn manifest_put(
        &self,
        _image: &ImageName,
        _reference: &Reference,
        _content_type: Option<&str>,
        _bytes: Bytes,
        _actor: &str,
    ) -> Result<PushedManifest> {
        Err(self.read_only())
    }

    async fn manifest_delete(
        &self,
        _image: &ImageName,
        _reference: &Reference,
        _actor: &str,
    ) -> Result<()> {
        Err(self.read_only())
    }

    async fn tags(&self, image: &ImageName, page: &Page) -> Result<Vec<String>> {
        let i = &self.inner;
        if let Some(tags) = i.tag_lists.get(image) {
            return Ok(paged(tags, page));
        }
        let path = i.path(image, "tags/list");
        match i
            .remote_json(&path, &i.scope(image), MAX_TAG_LIST_BODY)
            .await
        {
            Ok(Some(v)) => {
                let mut tags: Vec<String> = v["tags"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| t.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                tags.sort();
                i.tag_lists.insert(image.clone(), tags.clone());
                Ok(paged(tags, page))
            }
            Ok(None) => Err(RepoError::NameUnknown {
                image: image.clone(),
                place: format!("remote {}", i.url()),
            }),
            // Remote down: what was pulled through before is still known.
            Err(e) => match local(i.local.tags(image, page).await)? {
                Some(t) if !t.is_empty() => Ok(t),
                _ => Err(e),
            },
        }
    }

    async fn images(&self, page: &Page) -> Result<Vec<ImageName>> {
        self.inner.local.images(page).await
    }

    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>> {
        let i = &self.inner;
        let path = i.path(image, &format!("referrers/{subject}"));
        let remote = i.remote_json(&path, &i.scope(image), MAX_SMALL_BODY).await;
        let listed = match remote {
            Ok(Some(v)) => serde_json::from_value::<Vec<Descriptor>>(v["manifests"].clone()).ok(),
            _ => None,
        };
        match listed {
            Some(d) => Ok(d),
            // The remote cannot say: the referrers of what was pulled through (recorded by the
            // local store as it cached them).
            None => i.local.referrers(image, subject).await,
        }
    }

    async fn search(&self, term: &str, limit: usize) -> Result<Vec<String>> {
        let i = &self.inner;
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", term)
            .append_pair("n", &limit.to_string())
            .finish();
        let remote = i
            .remote_json(
                &format!("/v1/search?{q}"),
                "registry:catalog:*",
                MAX_SMALL_BODY,
            )
            .await;
        if let Ok(Some(v)) = remote {
            if let Some(results) = v["results"].as_array() {
                return Ok(results
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .take(limit)
                    .collect());
            }
        }
        // The remote has no V1 search (most do not): search what was pulled through.
        self.inner.local.search(term, limit).await
    }

    fn status(&self) -> serde_json::Value {
        self.inner.remote.status()
    }
}
