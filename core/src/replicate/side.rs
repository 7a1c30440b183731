//! The two ends of a copy behind one trait, so the copy is written once for both directions:
//! a Berth repository ([`Local`], through the same [`Repository`] calls as the registry API,
//! so a pull rule's writes are verified and committed exactly like a client's push) and the
//! remote ([`super::remote_side`]).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use super::ReplicateError;
use crate::oci::{Descriptor, Digest, ImageName, Reference};
use crate::repo::{Page, RepoError, Repository};
use crate::storage::ByteStream;

/// A manifest as copied: exact bytes, digest, media type.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Bytes,
}

/// One end of a copy.
#[async_trait]
pub trait Side: Send + Sync {
    /// Image names, sorted.
    async fn images(&self) -> Result<Vec<String>, ReplicateError>;
    /// The image's tags; none if the image does not exist.
    async fn tags(&self, image: &str) -> Result<Vec<String>, ReplicateError>;
    async fn manifest(
        &self,
        image: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, ReplicateError>;
    /// The digest a reference resolves to, if it exists.
    async fn manifest_digest(
        &self,
        image: &str,
        reference: &str,
    ) -> Result<Option<Digest>, ReplicateError>;
    async fn put_manifest(
        &self,
        image: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<(), ReplicateError>;
    async fn delete_tag(&self, image: &str, tag: &str) -> Result<(), ReplicateError>;
    async fn has_blob(&self, image: &str, digest: &Digest) -> Result<bool, ReplicateError>;
    /// The blob's size and its bytes.
    async fn read_blob(
        &self,
        image: &str,
        digest: &Digest,
    ) -> Result<(u64, ByteStream), ReplicateError>;
    /// Writes a blob of `size` bytes; it is visible once its digest is verified.
    async fn write_blob(
        &self,
        image: &str,
        digest: &Digest,
        size: u64,
        bytes: ByteStream,
    ) -> Result<(), ReplicateError>;
    /// Makes a blob already in `from` visible in `image`; `false` if that cannot be done.
    async fn mount_blob(
        &self,
        image: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, ReplicateError>;
    /// Manifests whose subject is `digest`.
    async fn referrers(
        &self,
        image: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ReplicateError>;
}

/// A Berth repository as one end.
pub struct Local {
    pub repo: Arc<dyn Repository>,
    /// Who the tag history names for a pull rule's writes (`replication:<rule>`).
    pub actor: String,
}

fn name(image: &str) -> Result<ImageName, ReplicateError> {
    image
        .parse()
        .map_err(|e| ReplicateError::Content(format!("image name {image:?}: {e}")))
}

fn reference(r: &str) -> Result<Reference, ReplicateError> {
    r.parse()
        .map_err(|e| ReplicateError::Content(format!("reference {r:?}: {e:?}")))
}

/// `None` for "not there", the error otherwise.
fn found<T>(r: Result<T, RepoError>) -> Result<Option<T>, ReplicateError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(ReplicateError::Local(e.to_string())),
    }
}

fn local(e: RepoError) -> ReplicateError {
    ReplicateError::Local(e.to_string())
}

#[async_trait]
impl Side for Local {
    async fn images(&self) -> Result<Vec<String>, ReplicateError> {
        let all = self.repo.images(&Page::all()).await.map_err(local)?;
        Ok(all.into_iter().map(|i| i.to_string()).collect())
    }

    async fn tags(&self, image: &str) -> Result<Vec<String>, ReplicateError> {
        let tags = found(self.repo.tags(&name(image)?, &Page::all()).await)?;
        Ok(tags.unwrap_or_default())
    }

    async fn manifest(
        &self,
        image: &str,
        reference_: &str,
    ) -> Result<Option<Manifest>, ReplicateError> {
        let m = found(
            self.repo
                .manifest(&name(image)?, &reference(reference_)?)
                .await,
        )?;
        Ok(m.map(|m| Manifest {
            digest: m.digest,
            media_type: m.media_type,
            bytes: m.bytes,
        }))
    }

    async fn manifest_digest(
        &self,
        image: &str,
        reference: &str,
    ) -> Result<Option<Digest>, ReplicateError> {
        Ok(self.manifest(image, reference).await?.map(|m| m.digest))
    }

    async fn put_manifest(
        &self,
        image: &str,
        reference_: &str,
        m: &Manifest,
    ) -> Result<(), ReplicateError> {
        self.repo
            .manifest_put(
                &name(image)?,
                &reference(reference_)?,
                Some(&m.media_type),
                m.bytes.clone(),
                &self.actor,
            )
            .await
            .map(|_| ())
            .map_err(local)
    }

    async fn delete_tag(&self, image: &str, tag: &str) -> Result<(), ReplicateError> {
        let r = self
            .repo
            .manifest_delete(&name(image)?, &reference(tag)?, &self.actor)
            .await;
        found(r).map(|_| ())
    }

    async fn has_blob(&self, image: &str, digest: &Digest) -> Result<bool, ReplicateError> {
        Ok(found(self.repo.blob_size(&name(image)?, digest).await)?.is_some())
    }

    async fn read_blob(
        &self,
        image: &str,
        digest: &Digest,
    ) -> Result<(u64, ByteStream), ReplicateError> {
        let image = name(image)?;
        let size = self.repo.blob_size(&image, digest).await.map_err(local)?;
        let bytes = self
            .repo
            .blob_read(&image, digest, 0, size)
            .await
            .map_err(local)?;
        Ok((size, bytes))
    }

    async fn write_blob(
        &self,
        image: &str,
        digest: &Digest,
        _size: u64,
        bytes: ByteStream,
    ) -> Result<(), ReplicateError> {
        let image = name(image)?;
        let id = self
            .repo
            .upload_start(&image, &self.actor)
            .await
            .map_err(local)?;
        let written = async {
            self.repo.upload_append(&image, &id, None, bytes).await?;
            self.repo.upload_finish(&image, &id, digest).await
        };
        if let Err(e) = written.await {
            // Nothing half-written stays: the session goes, its bytes with it.
            let _ = self.repo.upload_cancel(&image, &id).await;
            return Err(local(e));
        }
        Ok(())
    }

    async fn mount_blob(
        &self,
        image: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, ReplicateError> {
        self.repo
            .blob_mount(&name(image)?, digest, &name(from)?)
            .await
            .map_err(local)
    }

    async fn referrers(
        &self,
        image: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ReplicateError> {
        Ok(found(self.repo.referrers(&name(image)?, digest).await)?.unwrap_or_default())
    }
}
