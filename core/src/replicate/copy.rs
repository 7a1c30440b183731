//! Copying one tag, whole, from one [`Side`] to the other: an index's platform manifests
//! before the index, every manifest's blobs before the manifest (so the destination never
//! holds a manifest whose content is missing), then the referrers of each (signatures,
//! SBOMs), the tag last. What the destination already has is skipped: the tag when it already
//! names the same digest, a blob when a `HEAD` finds it, or mounted from another image the
//! run already copied it to. Bytes stream through; nothing is held whole but manifests.

use std::collections::{HashMap, HashSet};

use super::side::{Manifest, Side};
use super::ReplicateError;
use crate::oci::manifest::ManifestInfo;
use crate::oci::Digest;

/// Deepest nesting followed (an index of indexes of ...).
const MAX_DEPTH: usize = 4;

/// What one run moved.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    /// Tags copied (their manifest was new at the destination).
    pub images_copied: u64,
    /// Tags already up to date.
    pub images_skipped: u64,
    pub blobs_copied: u64,
    pub bytes_copied: u64,
    pub blobs_skipped: u64,
    pub referrers_copied: u64,
    pub tags_deleted: u64,
}

/// One copy: the two ends and what it learnt on the way.
pub struct Copier<'a> {
    pub src: &'a dyn Side,
    pub dst: &'a dyn Side,
    pub tally: Tally,
    /// Blobs written this run, and to which destination image (for mounts).
    written: HashMap<Digest, String>,
    /// Manifests known to be at the destination, per image.
    present: HashSet<(String, Digest)>,
}

impl<'a> Copier<'a> {
    pub fn new(src: &'a dyn Side, dst: &'a dyn Side) -> Copier<'a> {
        Copier {
            src,
            dst,
            tally: Tally::default(),
            written: HashMap::new(),
            present: HashSet::new(),
        }
    }

    /// Copies `tag` of `from` (source) to `to` (destination). A tag gone from the source in
    /// the meantime is no error: nothing to copy. `tag` may be a digest: a manifest already
    /// at the destination whose referrers are brought up to date.
    pub async fn tag(&mut self, from: &str, to: &str, tag: &str) -> Result<(), ReplicateError> {
        let Some(m) = self.src.manifest(from, tag).await? else {
            return Ok(());
        };
        let current = self.dst.manifest_digest(to, tag).await?;
        if current.is_none() && tag.parse::<Digest>().is_ok() {
            // A subject whose referrers changed, not replicated itself: not ours to copy.
            return Ok(());
        }
        if current.as_ref() == Some(&m.digest) {
            self.tally.images_skipped += 1;
            self.present.insert((to.to_owned(), m.digest.clone()));
        } else {
            self.tree(from, to, &m, 0).await?;
            self.dst.put_manifest(to, tag, &m).await?;
            self.tally.images_copied += 1;
        }
        self.referrers_of(from, to, &m, 0).await
    }

    /// Deletes `tag` at the destination (gone from the source).
    pub async fn delete(&mut self, to: &str, tag: &str) -> Result<(), ReplicateError> {
        self.dst.delete_tag(to, tag).await?;
        self.tally.tags_deleted += 1;
        Ok(())
    }

    /// Everything `m` needs at the destination, and `m` itself by digest for children.
    async fn tree(
        &mut self,
        from: &str,
        to: &str,
        m: &Manifest,
        depth: usize,
    ) -> Result<(), ReplicateError> {
        if depth > MAX_DEPTH {
            return Err(ReplicateError::Content(format!(
                "{from}: manifests nested deeper than {MAX_DEPTH}"
            )));
        }
        let info = ManifestInfo::parse(&m.bytes, Some(&m.media_type))
            .map_err(|e| ReplicateError::Content(format!("{from}@{}: {e}", m.digest)))?;
        for blob in &info.blobs {
            self.blob(from, to, &blob.digest).await?;
        }
        for child in &info.children {
            if self
                .present
                .contains(&(to.to_owned(), child.digest.clone()))
            {
                continue;
            }
            let reference = child.digest.to_string();
            if self.dst.manifest_digest(to, &reference).await?.is_none() {
                let c = self.src.manifest(from, &reference).await?.ok_or_else(|| {
                    ReplicateError::Content(format!("{from}: index names {reference}, not there"))
                })?;
                Box::pin(self.tree(from, to, &c, depth + 1)).await?;
                self.dst.put_manifest(to, &reference, &c).await?;
            }
            self.present.insert((to.to_owned(), child.digest.clone()));
        }
        Ok(())
    }

    /// A blob to the destination unless it is there: mounted if this run wrote it to another
    /// image, else streamed.
    async fn blob(&mut self, from: &str, to: &str, digest: &Digest) -> Result<(), ReplicateError> {
        if self.dst.has_blob(to, digest).await? {
            self.tally.blobs_skipped += 1;
            return Ok(());
        }
        if let Some(other) = self.written.get(digest).filter(|o| o.as_str() != to) {
            if self.dst.mount_blob(to, digest, other).await? {
                self.tally.blobs_skipped += 1;
                return Ok(());
            }
        }
        let (size, bytes) = self.src.read_blob(from, digest).await?;
        self.dst.write_blob(to, digest, size, bytes).await?;
        self.tally.blobs_copied += 1;
        self.tally.bytes_copied += size;
        self.written.insert(digest.clone(), to.to_owned());
        Ok(())
    }

    /// The referrers of `m` (and of an index's platform manifests) the destination lacks.
    async fn referrers_of(
        &mut self,
        from: &str,
        to: &str,
        m: &Manifest,
        depth: usize,
    ) -> Result<(), ReplicateError> {
        let mut subjects = vec![m.digest.clone()];
        if let Ok(info) = ManifestInfo::parse(&m.bytes, Some(&m.media_type)) {
            subjects.extend(info.children.into_iter().map(|c| c.digest));
        }
        for subject in subjects {
            for r in self.src.referrers(from, &subject).await? {
                let Ok(digest) = r.digest.parse::<Digest>() else {
                    continue;
                };
                let reference = digest.to_string();
                if self.dst.manifest_digest(to, &reference).await?.is_some() {
                    continue;
                }
                let Some(rm) = self.src.manifest(from, &reference).await? else {
                    continue;
                };
                self.tree(from, to, &rm, depth + 1).await?;
                self.dst.put_manifest(to, &reference, &rm).await?;
                self.tally.referrers_copied += 1;
                if depth < MAX_DEPTH {
                    // A signature of the SBOM, say.
                    Box::pin(self.referrers_of(from, to, &rm, depth + 1)).await?;
                }
            }
        }
        Ok(())
    }
}
