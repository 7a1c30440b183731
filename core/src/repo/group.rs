//! Group repositories: one endpoint over an ordered list of members.
//!
//! Reads go to the first member that has the content; tag lists, the catalog and referrers are
//! merged. A group may name a hosted member as writable: pushes through the group land there,
//! and a manifest pushed through the group may reference blobs (or child manifests) that only
//! another member has — those are copied into the writable member first, so the push never
//! fails with [`RepoError::ReferenceUnknown`] for content the client could see through the group.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Manifest, Page, PushedManifest, RepoError, RepoKind, Repository, Result};
use crate::oci::{Descriptor, Digest, ImageName, ManifestInfo, Reference, RepoName};
use crate::storage::ByteStream;

/// Who copies a member's child manifests into the writable member, in the tag history.
const GROUP_ACTOR: &str = "group";

/// A group's members, in lookup order, and where pushes through it land.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    pub members: Vec<RepoName>,
    /// A hosted member.
    pub writable_member: Option<RepoName>,
    /// Mirror mode: the repository serving each upstream a node names in `ns`.
    pub mirrors: std::collections::BTreeMap<String, RepoName>,
}

pub struct GroupRepository {
    name: RepoName,
    members: Vec<Arc<dyn Repository>>,
    writable: Option<Arc<dyn Repository>>,
}

impl GroupRepository {
    pub fn new(
        name: RepoName,
        members: Vec<Arc<dyn Repository>>,
        writable: Option<Arc<dyn Repository>>,
    ) -> Self {
        GroupRepository {
            name,
            members,
            writable,
        }
    }

    fn writable(&self) -> Result<&Arc<dyn Repository>> {
        self.writable.as_ref().ok_or_else(|| {
            RepoError::Denied(format!(
                "group {} has no writable member; push to a hosted repository",
                self.name
            ))
        })
    }

    /// The first member for which `f` succeeds; not-found answers move on, other failures are
    /// logged and move on too (a broken member must not hide the others).
    async fn first<T, F, Fut>(&self, not_found: impl Fn() -> RepoError, f: F) -> Result<(usize, T)>
    where
        F: Fn(Arc<dyn Repository>) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut last_err = None;
        for (i, m) in self.members.iter().enumerate() {
            match f(m.clone()).await {
                Ok(v) => return Ok((i, v)),
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(group = %self.name, member = %m.name(), error = %e, "member failed");
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(not_found))
    }

    /// The first member in which the blob is visible.
    async fn holder(&self, image: &ImageName, digest: &Digest) -> Result<&Arc<dyn Repository>> {
        let unknown = || RepoError::BlobUnknown {
            digest: digest.clone(),
            remote: None,
        };
        let (i, _) = self
            .first(unknown, |m| async move { m.blob_size(image, digest).await })
            .await?;
        Ok(&self.members[i])
    }

    /// Makes `digest` (a blob) available in the writable member, copying it from another
    /// member if needed.
    async fn adopt_blob(
        &self,
        w: &Arc<dyn Repository>,
        image: &ImageName,
        digest: &Digest,
    ) -> Result<()> {
        match w.blob_size(image, digest).await {
            Ok(_) => return Ok(()),
            Err(e) if !e.is_not_found() => return Err(e),
            Err(_) => {}
        }
        for m in &self.members {
            if Arc::ptr_eq(m, w) {
                continue;
            }
            if copy_blob(m.as_ref(), image, w.as_ref(), image, digest).await? {
                tracing::info!(group = %self.name, member = %m.name(), %digest, "copied blob into the writable member");
                return Ok(());
            }
        }
        Ok(()) // Nobody has it: the writable member will report the missing reference.
    }

    /// Makes a child manifest (and, recursively, what it references) available.
    fn adopt_manifest<'a>(
        &'a self,
        w: &'a Arc<dyn Repository>,
        image: &'a ImageName,
        digest: &'a Digest,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let reference = Reference::Digest(digest.clone());
            if w.manifest(image, &reference).await.is_ok() {
                return Ok(());
            }
            for m in &self.members {
                if Arc::ptr_eq(m, w) {
                    continue;
                }
                let Ok(found) = m.manifest(image, &reference).await else {
                    continue;
                };
                self.adopt_references(w, image, &found.bytes, Some(&found.media_type))
                    .await?;
                w.manifest_put(
                    image,
                    &reference,
                    Some(&found.media_type),
                    found.bytes,
                    GROUP_ACTOR,
                )
                .await?;
                return Ok(());
            }
            Ok(())
        })
    }

    async fn adopt_references(
        &self,
        w: &Arc<dyn Repository>,
        image: &ImageName,
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<()> {
        let Ok(info) = ManifestInfo::parse(bytes, content_type) else {
            return Ok(()); // The writable member reports MANIFEST_INVALID itself.
        };
        for b in &info.blobs {
            self.adopt_blob(w, image, &b.digest).await?;
        }
        for c in &info.children {
            self.adopt_manifest(w, image, &c.digest).await?;
        }
        Ok(())
    }
}

/// The client recorded on the sessions a group opens to copy blobs between members.
const GROUP_CLIENT: &str = "berth:group-copy";

/// Copies a blob `from` one repository `to` another through their upload APIs; `false` if
/// `from` does not have it. A failed copy leaves no session behind.
async fn copy_blob(
    from: &dyn Repository,
    from_image: &ImageName,
    to: &dyn Repository,
    image: &ImageName,
    digest: &Digest,
) -> Result<bool> {
    let Ok(size) = from.blob_size(from_image, digest).await else {
        return Ok(false);
    };
    let stream = from.blob_read(from_image, digest, 0, size).await?;
    let id = to.upload_start(image, GROUP_CLIENT).await?;
    let copied = async {
        to.upload_append(image, &id, Some(0), stream).await?;
        to.upload_finish(image, &id, digest).await
    }
    .await;
    if copied.is_err() {
        let _ = to.upload_cancel(image, &id).await;
    }
    copied.map(|_| true)
}

#[async_trait]
impl Repository for GroupRepository {
    fn name(&self) -> &RepoName {
        &self.name
    }

    fn kind(&self) -> RepoKind {
        RepoKind::Group
    }

    async fn blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64> {
        let unknown = || RepoError::BlobUnknown {
            digest: digest.clone(),
            remote: None,
        };
        Ok(self
            .first(unknown, |m| async move { m.blob_size(image, digest).await })
            .await?
            .1)
    }

    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        self.holder(image, digest)
            .await?
            .blob_read(image, digest, start, len)
            .await
    }

    async fn blob_redirect(&self, image: &ImageName, digest: &Digest) -> Result<Option<String>> {
        self.holder(image, digest)
            .await?
            .blob_redirect(image, digest)
            .await
    }

    async fn blob_delete(&self, image: &ImageName, digest: &Digest) -> Result<()> {
        self.writable()?.blob_delete(image, digest).await
    }

    async fn blob_mount(
        &self,
        image: &ImageName,
        digest: &Digest,
        from: &ImageName,
    ) -> Result<bool> {
        let w = self.writable()?;
        if w.blob_mount(image, digest, from).await? {
            return Ok(true);
        }
        // The source image may live in another member: copy it over if it is there.
        for m in &self.members {
            if !Arc::ptr_eq(m, w) && copy_blob(m.as_ref(), from, w.as_ref(), image, digest).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn upload_start(&self, image: &ImageName, client: &str) -> Result<String> {
        self.writable()?.upload_start(image, client).await
    }

    async fn upload_size(&self, image: &ImageName, id: &str) -> Result<u64> {
        self.writable()?.upload_size(image, id).await
    }

    async fn upload_append(
        &self,
        image: &ImageName,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.writable()?
            .upload_append(image, id, offset, body)
            .await
    }

    async fn upload_finish(&self, image: &ImageName, id: &str, digest: &Digest) -> Result<u64> {
        self.writable()?.upload_finish(image, id, digest).await
    }

    async fn upload_cancel(&self, image: &ImageName, id: &str) -> Result<()> {
        self.writable()?.upload_cancel(image, id).await
    }

    async fn manifest(&self, image: &ImageName, reference: &Reference) -> Result<Manifest> {
        let unknown = || RepoError::ManifestUnknown {
            image: image.clone(),
            reference: reference.clone(),
            remote: None,
        };
        Ok(self
            .first(
                unknown,
                |m| async move { m.manifest(image, reference).await },
            )
            .await?
            .1)
    }

    async fn manifest_put(
        &self,
        image: &ImageName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        actor: &str,
    ) -> Result<PushedManifest> {
        let w = self.writable()?.clone();
        self.adopt_references(&w, image, &bytes, content_type)
            .await?;
        w.manifest_put(image, reference, content_type, bytes, actor)
            .await
    }

    async fn manifest_delete(
        &self,
        image: &ImageName,
        reference: &Reference,
        actor: &str,
    ) -> Result<()> {
        self.writable()?
            .manifest_delete(image, reference, actor)
            .await
    }

    async fn tags(&self, image: &ImageName, page: &Page) -> Result<Vec<String>> {
        let mut all = Vec::new();
        let mut known = false;
        let mut failure = None;
        for m in &self.members {
            match m.tags(image, page).await {
                Ok(t) => {
                    known = true;
                    all.extend(t);
                }
                Err(e) if e.is_not_found() => {}
                Err(e) => {
                    tracing::warn!(group = %self.name, member = %m.name(), error = %e, "member failed");
                    failure = Some(e);
                }
            }
        }
        if !known {
            // "Unknown" would be a lie if a member could not be asked: say why instead.
            if let Some(e) = failure {
                return Err(e);
            }
            return Err(RepoError::NameUnknown {
                image: image.clone(),
                place: self.name.to_string(),
            });
        }
        // Each member gave at most a page after the same point: their merge, cut to a page,
        // is the group's page.
        all.sort();
        all.dedup();
        all.truncate(page.limit.unwrap_or(usize::MAX));
        Ok(all)
    }

    async fn images(&self, page: &Page) -> Result<Vec<ImageName>> {
        let mut all = Vec::new();
        for m in &self.members {
            match m.images(page).await {
                Ok(i) => all.extend(i),
                Err(e) => {
                    tracing::warn!(group = %self.name, member = %m.name(), error = %e, "member failed")
                }
            }
        }
        all.sort();
        all.dedup();
        all.truncate(page.limit.unwrap_or(usize::MAX));
        Ok(all)
    }

    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>> {
        let mut all: Vec<Descriptor> = Vec::new();
        for m in &self.members {
            if let Ok(found) = m.referrers(image, subject).await {
                for d in found {
                    if !all.iter().any(|x| x.digest == d.digest) {
                        all.push(d);
                    }
                }
            }
        }
        all.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(all)
    }

    async fn search(&self, term: &str, limit: usize) -> Result<Vec<String>> {
        let mut all = Vec::new();
        for m in &self.members {
            match m.search(term, limit).await {
                Ok(found) => all.extend(found),
                Err(e) => {
                    tracing::warn!(group = %self.name, member = %m.name(), error = %e, "search failed")
                }
            }
        }
        all.sort();
        all.dedup();
        all.truncate(limit);
        Ok(all)
    }

    fn status(&self) -> serde_json::Value {
        let members: Vec<_> = self.members.iter().map(|m| m.name().to_string()).collect();
        serde_json::json!({
            "members": members,
            "writable_member": self.writable.as_ref().map(|w| w.name().to_string()),
        })
    }
}
