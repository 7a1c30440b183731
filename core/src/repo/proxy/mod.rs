//! Proxy repositories: a pull-through cache of a remote registry, as a decorator around the
//! same storage a hosted repository uses.
//!
//! - Manifests by digest and blobs are immutable: once cached they are served locally forever.
//! - A tag is trusted for `metadata_max_age`; then a HEAD (which does not count against Docker
//!   Hub's pull limits) revalidates it, and only a changed digest is fetched again.
//! - When the remote is down, answers 429 or 5xx, or is auto-blocked after repeated failures,
//!   cached content keeps being served (tags from the last good answer); misses get an error
//!   that names the remote. "Not found" answers are remembered for `negative_cache_ttl`.
//! - Blobs are fetched once however many clients ask at the same moment (`fetch.rs`).
//! - Clients cannot push: a proxy is read-only.

mod fetch;
mod pull;
mod remote;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::{Manifest, PushedManifest, RepoError, RepoKind, Repository, Result};
use crate::config::ProxySettings;
use crate::oci::{Descriptor, Digest, ErrorCode, ImageName, Reference, RepoName, Tag};
use crate::storage::{ByteStream, Storage};
use fetch::Fetch;
pub use remote::{Remote, RemoteError, MANIFEST_ACCEPT};

/// Largest manifest accepted from a remote.
const MAX_REMOTE_MANIFEST: usize = crate::oci::manifest::MAX_MANIFEST_BYTES;

pub(super) struct Inner {
    pub(super) name: RepoName,
    pub(super) storage: Arc<dyn Storage>,
    pub(super) remote: Remote,
    pub(super) settings: ProxySettings,
    /// When each cached tag was last confirmed by the remote.
    pub(super) tag_checked: Mutex<HashMap<(ImageName, Tag), Instant>>,
    /// Remote "not found" answers, until they expire.
    pub(super) negative: Mutex<HashMap<String, Instant>>,
    /// Remote tag lists, reused for `content_max_age`.
    pub(super) tag_lists: Mutex<HashMap<ImageName, (Vec<String>, Instant)>>,
    /// Blob fetches in progress. An async lock because starting a fetch checks the cache.
    pub(super) inflight: tokio::sync::Mutex<HashMap<Digest, Arc<Fetch>>>,
}

/// A pull-through cache of one remote registry.
pub struct ProxyRepository {
    inner: Arc<Inner>,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) use super::client;

/// The remote could not be asked: a 502 (or the remote's 429) that names it.
pub(super) fn remote_failure(e: RemoteError) -> RepoError {
    RepoError::Remote(e.to_string())
}

impl ProxyRepository {
    pub fn new(
        name: RepoName,
        storage: Arc<dyn Storage>,
        settings: ProxySettings,
    ) -> std::io::Result<Self> {
        let remote = Remote::new(&settings)?;
        Ok(ProxyRepository {
            inner: Arc::new(Inner {
                name,
                storage,
                remote,
                settings,
                tag_checked: Mutex::new(HashMap::new()),
                negative: Mutex::new(HashMap::new()),
                tag_lists: Mutex::new(HashMap::new()),
                inflight: tokio::sync::Mutex::new(HashMap::new()),
            }),
        })
    }

    fn read_only(&self) -> RepoError {
        client(
            ErrorCode::Denied,
            format!(
                "{} is a proxy of {}: it is read-only; push to a hosted repository",
                self.inner.name,
                self.inner.remote.url()
            ),
        )
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
        let i = &self.inner;
        let ns = i.ns(image);
        if i.storage.blob_linked(&ns, digest).await? {
            if let Some(size) = i.storage.blob_size(digest).await? {
                return Ok(size);
            }
        }
        if let Some(f) = i.inflight.lock().await.get(digest) {
            if let Some(total) = f.state.borrow().total {
                return Ok(total);
            }
        }
        let unknown = || {
            client(
                ErrorCode::BlobUnknown,
                format!("blob {digest} is unknown (remote {})", i.remote.url()),
            )
        };
        let neg = format!("b:{image}:{digest}");
        if i.negative_hit(&neg) {
            return Err(unknown());
        }
        let resp = i
            .ask(Method::HEAD, image, &format!("blobs/{digest}"), None)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => {
                i.remember_missing(neg);
                Err(unknown())
            }
            s if s.is_success() => resp
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| {
                    RepoError::Remote(format!(
                        "remote {} gave no size for blob {digest}",
                        i.remote.url()
                    ))
                }),
            s => Err(RepoError::Remote(format!(
                "remote {} answered {s} for blob {digest}",
                i.remote.url()
            ))),
        }
    }

    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        let i = &self.inner;
        let ns = i.ns(image);
        if !i.storage.blob_linked(&ns, digest).await? {
            match i.fetch_blob(image, digest).await? {
                Some(f) => return Ok(fetch::follow(i.storage.clone(), f, start, start + len)),
                None if i.storage.blob_linked(&ns, digest).await? => {}
                None => {
                    return Err(client(
                        ErrorCode::BlobUnknown,
                        format!("blob {digest} is unknown (remote {})", i.remote.url()),
                    ))
                }
            }
        }
        Ok(i.storage.blob_read(digest, start, len).await?)
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
        let i = &self.inner;
        match reference {
            Reference::Tag(t) => i.manifest_by_tag(image, t).await,
            Reference::Digest(d) => {
                if let Some(m) = i.cached_manifest(&i.ns(image), d).await? {
                    return Ok(m);
                }
                let unknown = || {
                    client(
                        ErrorCode::ManifestUnknown,
                        format!(
                            "manifest {d} is unknown in {image} (remote {})",
                            i.remote.url()
                        ),
                    )
                };
                let neg = format!("m:{image}:{d}");
                if i.negative_hit(&neg) {
                    return Err(unknown());
                }
                match i.fetch_manifest(image, reference).await? {
                    Some(m) => Ok(m),
                    None => {
                        i.remember_missing(neg);
                        Err(unknown())
                    }
                }
            }
        }
    }

    async fn manifest_put(
        &self,
        _image: &ImageName,
        _reference: &Reference,
        _content_type: Option<&str>,
        _bytes: Bytes,
    ) -> Result<PushedManifest> {
        Err(self.read_only())
    }

    async fn manifest_delete(&self, _image: &ImageName, _reference: &Reference) -> Result<()> {
        Err(self.read_only())
    }

    async fn tags(&self, image: &ImageName) -> Result<Vec<String>> {
        let i = &self.inner;
        if let Some((tags, at)) = lock(&i.tag_lists).get(image) {
            if at.elapsed() < i.settings.content_max_age {
                return Ok(tags.clone());
            }
        }
        let remote = async {
            let resp = i.ask(Method::GET, image, "tags/list", None).await?;
            if resp.status() == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if !resp.status().is_success() {
                return Err(RepoError::Remote(format!(
                    "remote {} answered {} for tags of {image}",
                    i.remote.url(),
                    resp.status()
                )));
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| RepoError::Remote(e.to_string()))?
                .to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| RepoError::Remote(format!("tag list: {e}")))?;
            let mut tags: Vec<String> = v["tags"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|t| t.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            tags.sort();
            Ok(Some(tags))
        }
        .await;
        match remote {
            Ok(Some(tags)) => {
                lock(&i.tag_lists).insert(image.clone(), (tags.clone(), Instant::now()));
                Ok(tags)
            }
            Ok(None) => Err(client(
                ErrorCode::NameUnknown,
                format!("repository {image} is unknown at remote {}", i.remote.url()),
            )),
            Err(e) => {
                // Remote down: what was pulled through before is still known.
                match i.storage.tags(&i.ns(image)).await? {
                    Some(t) if !t.is_empty() => Ok(t),
                    _ => Err(e),
                }
            }
        }
    }

    async fn images(&self) -> Result<Vec<ImageName>> {
        Ok(self.inner.storage.images(&self.inner.name).await?)
    }

    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>> {
        let i = &self.inner;
        let remote = async {
            let resp = i
                .remote
                .request(
                    Method::GET,
                    &i.path(image, &format!("referrers/{subject}")),
                    None,
                    &i.scope(image),
                )
                .await
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            serde_json::from_value::<Vec<Descriptor>>(v["manifests"].clone()).ok()
        }
        .await;
        match remote {
            Some(d) => Ok(d),
            None => Ok(i.storage.referrers(&i.ns(image), subject).await?),
        }
    }

    async fn search(&self, term: &str, limit: usize) -> Result<Vec<String>> {
        let i = &self.inner;
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("q", term)
            .append_pair("n", &limit.to_string())
            .finish();
        let remote = async {
            let resp = i
                .remote
                .request(
                    Method::GET,
                    &format!("/v1/search?{q}"),
                    None,
                    "registry:catalog:*",
                )
                .await
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            Some(
                v["results"]
                    .as_array()?
                    .iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .take(limit)
                    .collect::<Vec<_>>(),
            )
        }
        .await;
        match remote {
            Some(names) => Ok(names),
            // The remote has no V1 search (most do not): search what was pulled through.
            None => Ok(self
                .images()
                .await?
                .into_iter()
                .map(|i| i.to_string())
                .filter(|n| n.contains(term))
                .take(limit)
                .collect()),
        }
    }

    fn status(&self) -> serde_json::Value {
        self.inner.remote.status()
    }
}
