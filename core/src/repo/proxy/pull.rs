//! The pull-through logic of a proxy repository: asking the remote, caching what it answers in
//! the local hosted store, revalidating tags and remembering misses.

use http::Method;

use super::answer::Answer;
use super::{remote_failure, Inner, MANIFEST_ACCEPT, MAX_REMOTE_MANIFEST};
use crate::oci::{Digest, ImageName, ManifestInfo, Reference, Tag};
use crate::repo::{Manifest, RepoError, Repository, Result};

impl Inner {
    pub(super) fn url(&self) -> &str {
        self.remote.url()
    }

    /// Asks the remote about `image` (`rest` follows `/v2/<remote name>/`), pull-scoped.
    pub(super) async fn ask(
        &self,
        method: Method,
        image: &ImageName,
        rest: &str,
        accept: Option<&str>,
    ) -> Result<Answer> {
        self.remote
            .ask(
                method,
                &self.path(image, rest),
                accept,
                &self.scope(image),
                rest,
            )
            .await
            .map_err(remote_failure)
    }

    pub(super) fn scope(&self, image: &ImageName) -> String {
        format!("repository:{}:pull", self.remote.remote_name(image))
    }

    pub(super) fn path(&self, image: &ImageName, rest: &str) -> String {
        format!("/v2/{}/{rest}", self.remote.remote_name(image))
    }

    pub(super) fn negative_hit(&self, key: &str) -> bool {
        self.negative.get(&key.to_owned()).is_some()
    }

    pub(super) fn remember_missing(&self, key: String) {
        self.negative.insert(key, ());
    }

    /// The cached manifest, if the local store has it.
    pub(super) async fn cached(
        &self,
        image: &ImageName,
        reference: &Reference,
    ) -> Result<Option<Manifest>> {
        match self.local.manifest(image, reference).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Fetches a manifest from the remote and caches it (and the tag, if any).
    pub(super) async fn fetch_manifest(
        &self,
        image: &ImageName,
        reference: &Reference,
    ) -> Result<Option<Manifest>> {
        let what = format!("manifest {reference}");
        let Answer::Found(resp) = self
            .ask(
                Method::GET,
                image,
                &format!("manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?
        else {
            return Ok(None);
        };
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = self
            .remote
            .read_body(resp, MAX_REMOTE_MANIFEST, &what)
            .await
            .map_err(remote_failure)?;
        let digest = Digest::sha256_of(&body);
        if let Reference::Digest(d) = reference {
            if d != &digest {
                return Err(RepoError::Remote(format!(
                    "remote {} sent manifest bytes with digest {digest} for {d}",
                    self.url()
                )));
            }
        }
        let info = ManifestInfo::parse(&body, content_type.as_deref()).map_err(|e| {
            RepoError::Remote(format!(
                "remote {} sent an unusable manifest: {e}",
                self.url()
            ))
        })?;
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let m = self.local.cache_manifest(image, tag, body, &info).await?;
        if let Some(t) = tag {
            self.tag_checked.insert((image.clone(), t.clone()), ());
        }
        Ok(Some(m))
    }

    /// Asks the remote which digest a tag has now (HEAD: free under Docker Hub's limits).
    async fn remote_tag_digest(&self, image: &ImageName, tag: &Tag) -> Result<Option<Digest>> {
        let answer = self
            .ask(
                Method::HEAD,
                image,
                &format!("manifests/{tag}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        Ok(match answer {
            Answer::Missing => None,
            Answer::Found(resp) => resp
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        })
    }

    /// A tag: served from the cache while fresh, revalidated with a HEAD after
    /// `metadata_max_age`, re-fetched only when it moved; the cached one when the remote fails.
    pub(super) async fn manifest_by_tag(&self, image: &ImageName, tag: &Tag) -> Result<Manifest> {
        let unknown = || RepoError::ManifestUnknown {
            image: image.clone(),
            reference: Reference::Tag(tag.clone()),
            remote: Some(self.url().to_owned()),
        };
        let reference = Reference::Tag(tag.clone());
        let cached = self.cached(image, &reference).await?;
        let key = (image.clone(), tag.clone());
        let fresh = self
            .tag_checked
            .get_younger(&key, self.settings.metadata_max_age)
            .is_some();
        if let (Some(m), true) = (&cached, fresh) {
            self.counters.manifest_hit.inc();
            return Ok(m.clone());
        }
        let neg = format!("m:{image}:{tag}");
        if cached.is_none() && self.negative_hit(&neg) {
            self.counters.manifest_hit.inc();
            return Err(unknown());
        }
        if let Some(m) = &cached {
            match self.remote_tag_digest(image, tag).await {
                Ok(Some(d)) if d == m.digest => {
                    self.tag_checked.insert(key, ());
                    self.counters.manifest_revalidated.inc();
                    return Ok(m.clone());
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    self.counters.manifest_miss.inc();
                    self.remember_missing(neg);
                    return Err(unknown());
                }
                Err(e) => {
                    tracing::warn!(repository = %self.name, %image, %tag, error = %e, "remote unavailable; serving the cached tag");
                    self.counters.manifest_stale.inc();
                    return Ok(m.clone());
                }
            }
        }
        self.counters.manifest_miss.inc();
        match self.fetch_manifest(image, &reference).await {
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

    /// A manifest by digest: immutable, so cached forever once fetched.
    pub(super) async fn manifest_by_digest(
        &self,
        image: &ImageName,
        digest: &Digest,
    ) -> Result<Manifest> {
        let reference = Reference::Digest(digest.clone());
        if let Some(m) = self.cached(image, &reference).await? {
            self.counters.manifest_hit.inc();
            return Ok(m);
        }
        let unknown = || RepoError::ManifestUnknown {
            image: image.clone(),
            reference: Reference::Digest(digest.clone()),
            remote: Some(self.url().to_owned()),
        };
        let neg = format!("m:{image}:{digest}");
        if self.negative_hit(&neg) {
            self.counters.manifest_hit.inc();
            return Err(unknown());
        }
        self.counters.manifest_miss.inc();
        match self.fetch_manifest(image, &reference).await? {
            Some(m) => Ok(m),
            None => {
                self.remember_missing(neg);
                Err(unknown())
            }
        }
    }

    /// A small JSON document from the remote (tag list, referrers, search), size-limited.
    pub(super) async fn remote_json(
        &self,
        path: &str,
        scope: &str,
        limit: usize,
    ) -> Result<Option<serde_json::Value>> {
        let Answer::Found(resp) = self
            .remote
            .ask(Method::GET, path, None, scope, path)
            .await
            .map_err(remote_failure)?
        else {
            return Ok(None);
        };
        let body = self
            .remote
            .read_body(resp, limit, path)
            .await
            .map_err(remote_failure)?;
        serde_json::from_slice(&body).map(Some).map_err(|e| {
            RepoError::Remote(format!(
                "remote {} sent bad JSON for {path}: {e}",
                self.url()
            ))
        })
    }
}

/// Bounds of the proxy's memory of remote answers (keys come from clients).
pub(super) const MAX_TAG_CHECKS: usize = 100_000;
pub(super) const MAX_NEGATIVE: usize = 100_000;
pub(super) const MAX_TAG_LISTS: usize = 1000;
/// Largest remote tag list read (Docker Hub's biggest run to a few MiB).
pub(super) const MAX_TAG_LIST_BODY: usize = 16 << 20;
/// Largest remote referrers index or V1 search answer read.
pub(super) const MAX_SMALL_BODY: usize = 4 << 20;
