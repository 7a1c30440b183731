//! Manifests of a hosted repository: a push is checked (grammar, digest, write policy, every
//! reference present with its true size), its bytes stored in the BlobStore, and then it
//! becomes visible in one MetadataStore transaction (row, references, tag, referrers entry).

use bytes::Bytes;

use super::HostedRepository;
use crate::oci::manifest::{Ref, MAX_MANIFEST_BYTES};
use crate::oci::{Digest, ErrorCode, ImageName, ManifestInfo, Reference, RegistryError, Tag};
use crate::repo::{client, Manifest, PushedManifest, RepoError, Result, WritePolicy};
use crate::storage::metadata::{Actor, ManifestRecord, Put};
use crate::storage::{Namespace, StorageError};

impl HostedRepository {
    fn manifest_unknown(image: &ImageName, reference: &Reference) -> RepoError {
        client(
            ErrorCode::ManifestUnknown,
            format!("manifest {reference} is unknown in {image}"),
        )
    }

    pub(super) async fn read_manifest(
        &self,
        image: &ImageName,
        reference: &Reference,
    ) -> Result<Manifest> {
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

    pub(super) async fn push_manifest(
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
            .map_err(|e| client(ErrorCode::ManifestInvalid, e.to_string()))?;
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

    /// A digest reference must be the bytes' digest; a tag may move only if the policy allows.
    async fn check_reference(
        &self,
        ns: &Namespace,
        reference: &Reference,
        digest: &Digest,
    ) -> Result<()> {
        match reference {
            Reference::Digest(d) if d != digest => Err(client(
                ErrorCode::DigestInvalid,
                format!("manifest bytes have digest {digest}, not {d}"),
            )),
            Reference::Tag(t) if self.policy == WritePolicy::DenyRedeploy || self.immutable(t).is_some() => {
                match self.stores.meta.tag(ns, t).await? {
                    Some(old) if &old != digest => Err(client(
                        ErrorCode::Denied,
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
    async fn check_references(&self, ns: &Namespace, info: &ManifestInfo) -> Result<()> {
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
    async fn store_manifest(
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

    pub(super) async fn delete_manifest(
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
}

impl HostedRepository {
    /// Immutable tags are never deleted, nor the manifests they point at.
    async fn check_not_immutable(&self, ns: &Namespace, reference: &Reference) -> Result<()> {
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
            Some((tag, rule)) => Err(client(
                ErrorCode::Denied,
                format!("tag {tag} is immutable in repository {} (immutable_tags: {rule}); it cannot be deleted", self.name),
            )),
            None => Ok(()),
        }
    }
}

/// `MANIFEST_BLOB_UNKNOWN` for a reference to nothing; `MANIFEST_INVALID` for a wrong size.
fn check_ref(ns: &Namespace, r: &Ref, stored: Option<u64>, what: &str) -> Result<()> {
    let detail = serde_json::json!({ "digest": r.digest.to_string() });
    match stored {
        None => Err(RepoError::Client(
            RegistryError::new(
                ErrorCode::ManifestBlobUnknown,
                format!(
                    "manifest references {what} {}, which is not in {}",
                    r.digest, ns.image
                ),
            )
            .with_detail(detail),
        )),
        Some(size) if size != r.size => Err(RepoError::Client(
            RegistryError::new(
                ErrorCode::ManifestInvalid,
                format!(
                    "manifest gives {what} {} a size of {}, but it has {size} bytes",
                    r.digest, r.size
                ),
            )
            .with_detail(detail),
        )),
        Some(_) => Ok(()),
    }
}
