//! The [`Repository`] trait for a hosted repository: every act of the Distribution API,
//! each written once, here. The checks and steps the acts share (sessions and the session cap,
//! manifest checks and the one transaction that makes a manifest visible) live beside it in
//! `uploads.rs` and `manifests.rs`.

use async_trait::async_trait;
use bytes::Bytes;

use super::uploads::upload_error;
use super::HostedRepository;
use crate::oci::manifest::MAX_MANIFEST_BYTES;
use crate::oci::{Descriptor, Digest, ImageName, ManifestInfo, Reference, RepoName};
use crate::repo::{Manifest, PushedManifest, RepoError, RepoKind, Repository, Result};
use crate::storage::blob::new_upload_id;
use crate::storage::metadata::{now_ms, Actor, Page, Put, UploadRecord};
use crate::storage::{ByteStream, StorageError};

#[async_trait]
impl Repository for HostedRepository {
    fn name(&self) -> &RepoName {
        &self.name
    }

    fn kind(&self) -> RepoKind {
        RepoKind::Hosted
    }

    async fn blob_size(&self, image: &ImageName, digest: &Digest) -> Result<u64> {
        self.visible(image, digest).await?;
        self.stores
            .blobs
            .stat(digest)
            .await?
            .ok_or_else(|| Self::blob_unknown(digest))
    }

    async fn blob_read(
        &self,
        image: &ImageName,
        digest: &Digest,
        start: u64,
        len: u64,
    ) -> Result<ByteStream> {
        // The link decides visibility; a missing blob shows as NotFound from the read itself.
        self.visible(image, digest).await?;
        match self.stores.blobs.read(digest, start, len).await {
            Err(StorageError::NotFound) => Err(Self::blob_unknown(digest)),
            other => Ok(other?),
        }
    }

    async fn blob_redirect(&self, image: &ImageName, digest: &Digest) -> Result<Option<String>> {
        self.visible(image, digest).await?;
        Ok(self.stores.blobs.redirect_url(digest).await?)
    }

    async fn blob_delete(&self, image: &ImageName, digest: &Digest) -> Result<()> {
        self.writable()?;
        if self
            .stores
            .meta
            .unlink_blob(&self.ns(image), digest)
            .await?
        {
            Ok(())
        } else {
            Err(Self::blob_unknown(digest))
        }
    }

    async fn blob_mount(
        &self,
        image: &ImageName,
        digest: &Digest,
        from: &ImageName,
    ) -> Result<bool> {
        self.writable()?;
        // The bytes are checked too: a collection that crashed after deleting bytes but
        // before committing leaves a record whose bytes are gone (its re-run removes it).
        if !self.stores.meta.blob_linked(&self.ns(from), digest).await?
            || self.stores.blobs.stat(digest).await?.is_none()
        {
            return Ok(false);
        }
        Ok(self.stores.meta.link_blob(&self.ns(image), digest).await?)
    }

    async fn upload_start(&self, image: &ImageName, client: &str) -> Result<String> {
        self.writable()?;
        self.check_quota(0).await?;
        if self.upload_limits.max_sessions != usize::MAX {
            self.make_room(client).await?;
        }
        let id = new_upload_id();
        self.stores.blobs.upload_create(&id).await?;
        let record = UploadRecord {
            id: id.clone(),
            namespace: self.ns(image),
            client: client.to_owned(),
            size: 0,
            updated_at: now_ms(),
            started: false,
        };
        if let Err(e) = self.stores.meta.upload_open(&record).await {
            let _ = self.stores.blobs.upload_cancel(&id).await;
            return Err(e.into());
        }
        Ok(id)
    }

    async fn upload_size(&self, image: &ImageName, id: &str) -> Result<u64> {
        self.session(image, id).await?;
        self.stores
            .blobs
            .upload_size(id)
            .await
            .map_err(upload_error)
    }

    async fn upload_append(
        &self,
        image: &ImageName,
        id: &str,
        offset: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        self.writable()?;
        self.session(image, id).await?;
        // Bytes are coming: the session is active, no longer an empty one the cap drops first.
        self.stores.meta.upload_touch(id).await?;
        let appended = self.stores.blobs.upload_append(id, offset, body).await;
        // Bytes received before a broken body are kept: record them either way.
        let size = match &appended {
            Ok(size) => Some(*size),
            Err(StorageError::Body(_)) => self.stores.blobs.upload_size(id).await.ok(),
            Err(_) => None,
        };
        if let Some(size) = size {
            self.stores.meta.upload_progress(id, size).await?;
        }
        appended.map_err(upload_error)
    }

    async fn upload_finish(&self, image: &ImageName, id: &str, digest: &Digest) -> Result<u64> {
        self.writable()?;
        self.session(image, id).await?;
        if !digest.is_storable() {
            return Err(upload_error(StorageError::UnsupportedDigest(
                digest.clone(),
            )));
        }
        if self.lifecycle.quota.is_some() {
            let size = self
                .stores
                .blobs
                .upload_size(id)
                .await
                .map_err(upload_error)?;
            if let Err(e) = self.check_quota(size).await {
                self.end_session(id).await?;
                return Err(e);
            }
        }
        // The record first, so the collector leaves the bytes alone while they are placed.
        self.stores.meta.blob_intent(digest).await?;
        let committed = self.stores.blobs.upload_commit(id, digest).await;
        // Committed or discarded (a digest mismatch): the session is over either way.
        if !matches!(committed, Err(StorageError::Io(_))) {
            self.stores.meta.upload_close(id).await?;
        }
        let size = committed.map_err(upload_error)?;
        self.stores
            .meta
            .blob_placed(Some(&self.ns(image)), digest, size)
            .await?;
        self.note_stored(size);
        Ok(size)
    }

    async fn upload_cancel(&self, image: &ImageName, id: &str) -> Result<()> {
        self.session(image, id).await?;
        self.end_session(id).await
    }

    async fn manifest(&self, image: &ImageName, reference: &Reference) -> Result<Manifest> {
        let ns = self.ns(image);
        let unknown = || Self::manifest_unknown(image, reference);
        let (digest, media_type) = match reference {
            Reference::Tag(t) => self
                .stores
                .meta
                .tagged_manifest(&ns, t)
                .await?
                .ok_or_else(unknown)?,
            Reference::Digest(d) => {
                let media_type = self.stores.meta.manifest_media_type(&ns, d).await?;
                (d.clone(), media_type.ok_or_else(unknown)?)
            }
        };
        let bytes = match self.stores.manifests.get(&digest) {
            Some(bytes) => bytes,
            None => match self.stores.blobs.bytes(&digest).await {
                Err(StorageError::NotFound) => return Err(unknown()),
                other => {
                    let bytes = other?;
                    self.stores.manifests.insert(&digest, &bytes);
                    bytes
                }
            },
        };
        self.stores.pulls.record(&ns, &digest);
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    async fn manifest_put(
        &self,
        image: &ImageName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Bytes,
        actor: &str,
    ) -> Result<PushedManifest> {
        self.writable()?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RepoError::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let info = ManifestInfo::parse(&bytes, content_type)
            .map_err(|e| RepoError::ManifestInvalid(e.to_string()))?;
        let digest = Digest::sha256_of(&bytes);
        let ns = self.ns(image);
        self.check_reference(&ns, reference, &digest).await?;
        self.check_references(&ns, &info).await?;
        let tag = match reference {
            Reference::Tag(t) => Some(t),
            Reference::Digest(_) => None,
        };
        let put = Put {
            tag,
            actor: Actor::new(actor, "push"),
            check_references: true,
        };
        self.store_manifest(&ns, bytes, &info, &put).await?;
        Ok(PushedManifest {
            digest,
            subject: info.subject,
        })
    }

    async fn manifest_delete(
        &self,
        image: &ImageName,
        reference: &Reference,
        actor: &str,
    ) -> Result<()> {
        self.writable()?;
        let ns = self.ns(image);
        self.check_not_immutable(&ns, reference).await?;
        let deleted = match reference {
            Reference::Tag(t) => {
                let actor = Actor::new(actor, "delete");
                self.stores.meta.delete_tag(&ns, t, actor).await?
            }
            // Tags pointing at it go with it (they would dangle), in the same transaction.
            Reference::Digest(d) => {
                let actor = Actor::new(actor, "manifest deleted");
                self.stores
                    .meta
                    .delete_manifest(&ns, d, actor)
                    .await?
                    .is_some()
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(Self::manifest_unknown(image, reference))
        }
    }

    async fn tags(&self, image: &ImageName, page: &Page) -> Result<Vec<String>> {
        self.stores
            .meta
            .tags(&self.ns(image), page)
            .await?
            .ok_or_else(|| RepoError::NameUnknown {
                image: image.clone(),
                place: self.name.to_string(),
            })
    }

    async fn images(&self, page: &Page) -> Result<Vec<ImageName>> {
        Ok(self.stores.meta.images(&self.name, page).await?)
    }

    async fn referrers(&self, image: &ImageName, subject: &Digest) -> Result<Vec<Descriptor>> {
        Ok(self.stores.meta.referrers(&self.ns(image), subject).await?)
    }
}
