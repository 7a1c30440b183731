//! What the contract cases share: namespaces of their own per case, digests and manifests
//! made from a seed, and the pushes most cases start with.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::{Actor, ManifestRecord, MetadataStore, Put};
use crate::oci::{Digest, Tag};
use crate::storage::Namespace;

pub(super) fn ns(prefix: &str, case: &str, image: &str) -> Namespace {
    Namespace::new(
        format!("{prefix}-{case}").parse().unwrap(),
        image.parse().unwrap(),
    )
}

pub(super) fn digest(seed: &str) -> Digest {
    Digest::sha256_of(seed.as_bytes())
}

pub(super) fn manifest(seed: &str, subject: Option<&Digest>) -> ManifestRecord {
    ManifestRecord {
        digest: digest(seed),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 100 + seed.len() as u64,
        subject: subject.cloned(),
        artifact_type: subject.map(|_| "application/vnd.example.sig".to_owned()),
        annotations: subject.map(|_| BTreeMap::from([("k".to_owned(), "v".to_owned())])),
        blobs: vec![
            digest(&format!("{seed}-config")),
            digest(&format!("{seed}-layer")),
        ],
        children: vec![],
    }
}

/// Stores a manifest as a repository does: its record first, then the put (references are
/// not checked: these cases are about the store's bookkeeping).
pub(super) async fn put(s: &dyn MetadataStore, n: &Namespace, m: &ManifestRecord, t: Option<&Tag>) {
    s.blob_intent(&m.digest).await.unwrap();
    let put = Put {
        tag: t,
        actor: Actor::new("tester", "push"),
        check_references: false,
    };
    s.put_manifest(n, m, &put).await.unwrap();
}

/// Stores and links a blob as a finished upload does.
pub(super) async fn place(s: &dyn MetadataStore, n: &Namespace, d: &Digest, size: u64) {
    s.blob_intent(d).await.unwrap();
    s.blob_placed(Some(n), d, size).await.unwrap();
}

pub(super) fn actor() -> Actor<'static> {
    Actor::new("tester", "delete")
}

pub(super) fn tag(t: &str) -> Tag {
    t.parse().unwrap()
}
