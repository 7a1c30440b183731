//! Manifests of a hosted repository: a push is checked (grammar, digest, write policy, every
//! reference present with its true size), its bytes stored in the BlobStore, and then it
//! becomes visible in one MetadataStore transaction (row, references, tag, referrers entry).

use bytes::Bytes;

use super::HostedRepository;
use crate::oci::manifest::Ref;
use crate::oci::{Digest, ImageName, ManifestInfo, Reference, Tag};
use crate::repo::{Manifest, RepoError, Result, WritePolicy};
use crate::storage::metadata::{Actor, ManifestRecord, Put};
use crate::storage::Namespace;

impl HostedRepository {
    pub(super) fn manifest_unknown(image: &ImageName, reference: &Reference) -> RepoError {
        RepoError::ManifestUnknown {
            image: image.clone(),
            reference: reference.clone(),
            remote: None,
        }
    }

    /// A digest reference must be the bytes' digest; a tag may move only if the policy allows.
    pub(super) async fn check_reference(
        &self,
        ns: &Namespace,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<()> {
        match reference {
            Reference::Digest(d) if d != digest => Err(RepoError::DigestMismatch {
                what: "the manifest",
                expected: d.clone(),
                actual: digest.clone(),
            }),
            Reference::Tag(t) if self.policy == WritePolicy::DenyRedeploy || self.immutable(t).is_some() => {
                match self.stores.meta.tag(ns, t).await? {
                    Some(old) if &old != digest => Err(RepoError::Denied(
                        match self.immutable(t) {
                            Some(rule) => format!(
                                "tag {t} is immutable in repository {} (immutable_tags: {rule}); it already points at {old}",
                                self.name
                            ),
                            None => format!(
                                "tag {t} already points at {old} and repository {} denies redeploy",
                                self.name
                            ),
                        },
                    )),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// Every blob and child manifest the new manifest names must already be in the image, with
    /// the size the manifest gives (a wrong size would make every client fail its download).
    pub(super) async fn check_references(&self, ns: &Namespace, info: &ManifestInfo) -> Result<()> {
        for blob in &info.blobs {
            let stored = if self.stores.meta.blob_linked(ns, &blob.digest).await? {
                self.stores.blobs.stat(&blob.digest).await?
            } else {
                None
            };
            check_ref(ns, blob, stored, "blob")?;
        }
        for child in &info.children {
            let stored = match self
                .stores
                .meta
                .manifest_media_type(ns, &child.digest)
                .await?
            {
                Some(_) => self.stores.blobs.stat(&child.digest).await?,
                None => None,
            };
            check_ref(ns, child, stored, "manifest")?;
        }
        Ok(())
    }

    /// The one place a manifest becomes visible, shared by pushes and a proxy's cache: its
    /// record first (so the collector leaves the bytes alone), bytes into the BlobStore
    /// (durably), then one metadata transaction that re-checks the references.
    pub(super) async fn store_manifest(
        &self,
        ns: &Namespace,
        bytes: Bytes,
        info: &ManifestInfo,
        put: &Put<'_>,
    ) -> Result<Digest> {
        let size = bytes.len() as u64;
        let digest = Digest::sha256_of(&bytes);
        self.stores.meta.blob_intent(&digest).await?;
        let stored = self.stores.blobs.put(bytes).await?;
        debug_assert_eq!(stored, digest);
        let record = ManifestRecord::from_info(digest.clone(), size, info);
        self.stores.meta.put_manifest(ns, &record, put).await?;
        Ok(digest)
    }

    /// Keeps a manifest that came from elsewhere (a proxy's remote), with its tag if any; the
    /// caller has parsed it. Unlike a push, neither the write policy nor the referenced blobs
    /// are checked: a cache holds a manifest before the blobs it names are pulled through.
    pub(crate) async fn cache_manifest(
        &self,
        image: &ImageName,
        tag: Option<&Tag>,
        bytes: Bytes,
        info: &ManifestInfo,
    ) -> Result<Manifest> {
        let put = Put {
            tag,
            actor: Actor::new("proxy", "cache"),
            check_references: false,
        };
        let digest = self
            .store_manifest(&self.ns(image), bytes.clone(), info, &put)
            .await?;
        Ok(Manifest {
            digest,
            media_type: info.media_type.clone(),
            bytes,
        })
    }
}

impl HostedRepository {
    /// Immutable tags are never deleted, nor the manifests they point at.
    pub(super) async fn check_not_immutable(
        &self,
        ns: &Namespace,
        reference: &Reference,
    ) -> Result<()> {
        if self.lifecycle.immutable_tags.is_empty() {
            return Ok(());
        }
        let held = match reference {
            Reference::Tag(t) => self.immutable(t).map(|r| (t.to_string(), r.to_string())),
            Reference::Digest(d) => self
                .stores
                .meta
                .tag_infos(ns)
                .await?
                .into_iter()
                .filter(|t| &t.digest == d)
                .find_map(|t| {
                    self.immutable_str(&t.tag)
                        .map(|r| (t.tag.clone(), r.to_string()))
                }),
        };
        match held {
            Some((tag, rule)) => Err(RepoError::Denied(
                format!("tag {tag} is immutable in repository {} (immutable_tags: {rule}); it cannot be deleted", self.name),
            )),
            None => Ok(()),
        }
    }
}

/// A reference to nothing, or to content of another size than the manifest gives.
fn check_ref(ns: &Namespace, r: &Ref, stored: Option<u64>, what: &'static str) -> Result<()> {
    match stored {
        None => Err(RepoError::ReferenceUnknown {
            what,
            digest: r.digest.clone(),
            place: ns.image.to_string(),
        }),
        Some(actual) if actual != r.size => Err(RepoError::ReferenceSize {
            what,
            digest: r.digest.clone(),
            declared: r.size,
            actual,
        }),
        Some(_) => Ok(()),
    }
}
