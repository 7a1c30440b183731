//! The pull-through logic of a proxy repository: asking the remote, caching what it answers,
//! revalidating tags, remembering misses, and starting single-flight blob fetches.

use std::sync::Arc;
use std::time::Instant;

use futures_util::StreamExt;
use http::{Method, StatusCode};
use http_body_util::BodyExt;

use super::fetch::{self, Fetch, FetchState};
use super::{client, lock, remote_failure, Inner, MANIFEST_ACCEPT, MAX_REMOTE_MANIFEST};
use crate::oci::{Digest, ErrorCode, ImageName, ManifestInfo, Reference, Tag};
use crate::repo::{Manifest, RepoError, Result};
use crate::storage::{ByteStream, Namespace, StorageError};

/// The client recorded on the upload sessions a proxy fills from its remote.
const PROXY_CLIENT: &str = "berth:proxy-fetch";

impl Inner {
    /// Asks the remote about `image` (`rest` follows `/v2/<remote name>/`), pull-scoped.
    pub(super) async fn ask(
        &self,
        method: Method,
        image: &ImageName,
        rest: &str,
        accept: Option<&str>,
    ) -> Result<http::Response<hyper::body::Incoming>> {
        self.remote
            .request(method, &self.path(image, rest), accept, &self.scope(image))
            .await
            .map_err(remote_failure)
    }

    /// What a client is told when the remote answered `status` for `what`: its 429 passes
    /// through as TOOMANYREQUESTS, anything else is a 502 naming the remote.
    pub(super) fn refused(&self, status: StatusCode, what: &str) -> RepoError {
        if status == StatusCode::TOO_MANY_REQUESTS {
            return client(
                ErrorCode::TooManyRequests,
                format!("remote {} rate-limits us", self.remote.url()),
            );
        }
        RepoError::Remote(format!(
            "remote {} answered {status} for {what}",
            self.remote.url()
        ))
    }

    pub(super) fn ns(&self, image: &ImageName) -> Namespace {
        Namespace::new(self.name.clone(), image.clone())
    }

    pub(super) fn scope(&self, image: &ImageName) -> String {
        format!("repository:{}:pull", self.remote.remote_name(image))
    }

    pub(super) fn path(&self, image: &ImageName, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.remote.remote_name(image))
    }

    pub(super) fn negative_hit(&self, key: &str) -> bool {
        let mut n = lock(&self.negative);
        match n.get(key) {
            Some(t) if t.elapsed() < self.settings.negative_cache_ttl => true,
            Some(_) => {
                n.remove(key);
                false
            }
            None => false,
        }
    }

    pub(super) fn remember_missing(&self, key: String) {
        lock(&self.negative).insert(key, Instant::now());
    }

    /// The cached manifest `digest` of `image`, if any.
    pub(super) async fn cached_manifest(
        &self,
        ns: &Namespace,
        digest: &Digest,
    ) -> Result<Option<Manifest>> {
        let Some(media_type) = self.storage.manifest_media_type(ns, digest).await? else {
            return Ok(None);
        };
        match self.storage.blob_bytes(digest).await {
            Ok(bytes) => Ok(Some(Manifest {
                digest: digest.clone(),
                media_type,
                bytes,
            })),
            Err(StorageError::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches a manifest from the remote and caches it (and the tag, if any).
    pub(super) async fn fetch_manifest(
        &self,
        image: &ImageName,
        reference: &Reference,
    ) -> Result<Option<Manifest>> {
        let ns = self.ns(image);
        let resp = self
            .ask(
                Method::GET,
                image,
                &format!("manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.refused(status, &format!("manifest {reference}")));
        }
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = http_body_util::Limited::new(resp.into_body(), MAX_REMOTE_MANIFEST)
            .collect()
            .await
            .map_err(|e| {
                RepoError::Remote(format!(
                    "reading manifest {reference} from {}: {e}",
                    self.remote.url()
                ))
            })?
            .to_bytes();
        let digest = Digest::sha256_of(&body);
        if let Reference::Digest(d) = reference {
            if d != &digest {
                return Err(RepoError::Remote(format!(
                    "remote {} sent manifest bytes with digest {digest} for {d}",
                    self.remote.url()
                )));
            }
        }
        let info = ManifestInfo::parse(&body, content_type.as_deref()).map_err(|e| {
            RepoError::Remote(format!(
                "remote {} sent an unusable manifest: {e}",
                self.remote.url()
            ))
        })?;
        self.storage.blob_put(body.clone()).await?;
        self.storage
            .manifest_link(&ns, &digest, &info.media_type)
            .await?;
        if let Reference::Tag(t) = reference {
            self.storage.tag_set(&ns, t, &digest).await?;
            lock(&self.tag_checked).insert((image.clone(), t.clone()), Instant::now());
        }
        Ok(Some(Manifest {
            digest,
            media_type: info.media_type,
            bytes: body,
        }))
    }

    /// Asks the remote which digest a tag has now (HEAD: free under Docker Hub's limits).
    pub(super) async fn remote_tag_digest(
        &self,
        image: &ImageName,
        tag: &Tag,
    ) -> std::result::Result<Option<Digest>, RepoError> {
        let resp = self
            .ask(
                Method::HEAD,
                image,
                &format!("manifests/{tag}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            s => Err(RepoError::Remote(format!(
                "remote {} answered {s} for tag {tag}",
                self.remote.url()
            ))),
        }
    }

    pub(super) async fn manifest_by_tag(&self, image: &ImageName, tag: &Tag) -> Result<Manifest> {
        let ns = self.ns(image);
        let unknown = || {
            client(
                ErrorCode::ManifestUnknown,
                format!(
                    "manifest {tag} is unknown in {image} (remote {})",
                    self.remote.url()
                ),
            )
        };
        let cached = match self.storage.tag_get(&ns, tag).await? {
            Some(d) => self.cached_manifest(&ns, &d).await?,
            None => None,
        };
        let key = (image.clone(), tag.clone());
        let fresh = lock(&self.tag_checked)
            .get(&key)
            .is_some_and(|t| t.elapsed() < self.settings.metadata_max_age);
        if let (Some(m), true) = (&cached, fresh) {
            return Ok(m.clone());
        }
        let neg = format!("m:{image}:{tag}");
        if cached.is_none() && self.negative_hit(&neg) {
            return Err(unknown());
        }
        // Revalidate a cached tag with a HEAD; fetch only when it moved.
        if let Some(m) = &cached {
            match self.remote_tag_digest(image, tag).await {
                Ok(Some(d)) if d == m.digest => {
                    lock(&self.tag_checked).insert(key, Instant::now());
                    return Ok(m.clone());
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.remember_missing(neg);
                    return Err(unknown());
                }
                Err(e) => {
                    tracing::warn!(repository = %self.name, %image, %tag, error = %e, "remote unavailable; serving the cached tag");
                    return Ok(m.clone());
                }
            }
        }
        match self
            .fetch_manifest(image, &Reference::Tag(tag.clone()))
            .await
        {
            Ok(Some(m)) => Ok(m),
            Ok(None) => {
                self.remember_missing(neg);
                Err(unknown())
            }
            Err(e) => match cached {
                Some(m) => {
                    tracing::warn!(repository = %self.name, %image, %tag, error = %e, "remote failed; serving the cached tag");
                    Ok(m)
                }
                None => Err(e),
            },
        }
    }

    /// Starts (or joins) the fetch of an uncached blob; `None` if the remote does not have it.
    pub(super) async fn fetch_blob(
        self: &Arc<Self>,
        image: &ImageName,
        digest: &Digest,
    ) -> Result<Option<Arc<Fetch>>> {
        let ns = self.ns(image);
        let mut inflight = self.inflight.lock().await;
        if let Some(f) = inflight.get(digest) {
            return Ok(Some(f.clone()));
        }
        if self.storage.blob_linked(&ns, digest).await? {
            return Ok(None);
        }
        let neg = format!("b:{image}:{digest}");
        if self.negative_hit(&neg) {
            return Ok(None);
        }
        let resp = self
            .ask(Method::GET, image, &format!("blobs/{digest}"), None)
            .await?;
        match resp.status() {
            StatusCode::NOT_FOUND => {
                self.remember_missing(neg);
                return Ok(None);
            }
            s if !s.is_success() => return Err(self.refused(s, &format!("blob {digest}"))),
            _ => {}
        }
        let total = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let upload = self.storage.upload_create(&ns, PROXY_CLIENT).await?;
        let (tx, rx) = tokio::sync::watch::channel(FetchState {
            total,
            ..FetchState::default()
        });
        let f = Arc::new(Fetch::new(ns, upload, digest.clone(), rx));
        inflight.insert(digest.clone(), f.clone());
        drop(inflight);
        let body: ByteStream = Box::pin(
            resp.into_body()
                .into_data_stream()
                .map(|r| r.map_err(std::io::Error::other)),
        );
        let inner = self.clone();
        let task_fetch = f.clone();
        // The fetch runs on its own: a client that goes away does not cancel it for the others.
        tokio::spawn(async move {
            fetch::run(inner.storage.clone(), task_fetch.clone(), tx, body).await;
            inner.inflight.lock().await.remove(&task_fetch.digest);
        });
        Ok(Some(f))
    }
}
