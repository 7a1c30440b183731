//! The storage contract as tests, run against every backend. A new backend (S3, a database)
//! joins by adding one line to the `backends!` invocation at the bottom.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{ByteStream, Namespace, Storage, StorageError};
use crate::oci::{Descriptor, Digest};

fn ns(repo: &str, image: &str) -> Namespace {
    Namespace::new(repo.parse().unwrap(), image.parse().unwrap())
}

fn body(chunks: &[&[u8]]) -> ByteStream {
    let owned: Vec<io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(owned))
}

async fn read_all(s: &dyn Storage, d: &Digest, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = s.blob_read(d, start, len).await.unwrap();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

pub async fn upload_commit_and_read(s: Arc<dyn Storage>) {
    let a = ns("hosted", "team/app");
    let id = s.upload_create(&a, "tester").await.unwrap();
    assert_eq!(s.upload_size(&a, &id).await.unwrap(), 0);
    assert_eq!(
        s.upload_append(&a, &id, Some(0), body(&[b"hello ", b"wor"]))
            .await
            .unwrap(),
        9
    );
    assert_eq!(
        s.upload_append(&a, &id, None, body(&[b"ld"]))
            .await
            .unwrap(),
        11
    );
    let d = Digest::sha256_of(b"hello world");
    assert!(
        !s.blob_linked(&a, &d).await.unwrap(),
        "not visible before commit"
    );
    assert_eq!(
        s.blob_size(&d).await.unwrap(),
        None,
        "not stored before commit"
    );
    assert_eq!(s.upload_commit(&a, &id, &d).await.unwrap(), 11);
    assert!(s.blob_linked(&a, &d).await.unwrap());
    assert_eq!(s.blob_size(&d).await.unwrap(), Some(11));
    assert_eq!(read_all(s.as_ref(), &d, 0, 11).await, b"hello world");
    assert_eq!(read_all(s.as_ref(), &d, 6, 5).await, b"world");
    assert!(
        matches!(s.upload_size(&a, &id).await, Err(StorageError::NotFound)),
        "session is gone"
    );
}

pub async fn offset_mismatch_keeps_data(s: Arc<dyn Storage>) {
    let a = ns("hosted", "x");
    let id = s.upload_create(&a, "tester").await.unwrap();
    s.upload_append(&a, &id, Some(0), body(&[b"abc"]))
        .await
        .unwrap();
    let e = s
        .upload_append(&a, &id, Some(5), body(&[b"zzz"]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            StorageError::OffsetMismatch {
                current: 3,
                requested: 5
            }
        ),
        "{e}"
    );
    assert_eq!(s.upload_size(&a, &id).await.unwrap(), 3);
}

pub async fn digest_mismatch_stores_nothing(s: Arc<dyn Storage>) {
    let a = ns("hosted", "x");
    let id = s.upload_create(&a, "tester").await.unwrap();
    s.upload_append(&a, &id, None, body(&[b"abc"]))
        .await
        .unwrap();
    let wrong = Digest::sha256_of(b"abd");
    let e = s.upload_commit(&a, &id, &wrong).await.unwrap_err();
    assert!(matches!(e, StorageError::DigestMismatch { .. }), "{e}");
    assert_eq!(s.blob_size(&wrong).await.unwrap(), None);
    assert_eq!(s.blob_size(&Digest::sha256_of(b"abc")).await.unwrap(), None);
    assert!(matches!(
        s.upload_size(&a, &id).await,
        Err(StorageError::NotFound)
    ));
}

pub async fn broken_body_keeps_received_bytes(s: Arc<dyn Storage>) {
    let a = ns("hosted", "x");
    let id = s.upload_create(&a, "tester").await.unwrap();
    let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client went away",
        )),
    ]));
    assert!(matches!(
        s.upload_append(&a, &id, None, broken).await,
        Err(StorageError::Body(_))
    ));
    assert_eq!(s.upload_size(&a, &id).await.unwrap(), 3, "resumable from 3");
    s.upload_append(&a, &id, Some(3), body(&[b"def"]))
        .await
        .unwrap();
    s.upload_commit(&a, &id, &Digest::sha256_of(b"abcdef"))
        .await
        .unwrap();
}

pub async fn sessions_are_scoped(s: Arc<dyn Storage>) {
    let (a, b) = (ns("hosted", "a"), ns("hosted", "b"));
    let id = s.upload_create(&a, "tester").await.unwrap();
    let listed = s.uploads().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].id.as_str(), &listed[0].namespace),
        (id.as_str(), &a)
    );
    assert!(matches!(
        s.upload_size(&b, &id).await,
        Err(StorageError::NotFound)
    ));
    assert!(matches!(
        s.upload_size(&a, "../../etc").await,
        Err(StorageError::NotFound)
    ));
    s.upload_cancel(&a, &id).await.unwrap();
    assert!(matches!(
        s.upload_size(&a, &id).await,
        Err(StorageError::NotFound)
    ));
}

pub async fn blobs_are_shared_but_links_are_not(s: Arc<dyn Storage>) {
    let (a, b) = (ns("one", "img"), ns("two", "img"));
    let d = s.blob_put(Bytes::from_static(b"shared")).await.unwrap();
    s.link_blob(&a, &d).await.unwrap();
    assert!(s.blob_linked(&a, &d).await.unwrap());
    assert!(!s.blob_linked(&b, &d).await.unwrap());
    s.link_blob(&b, &d).await.unwrap();
    assert!(s.unlink_blob(&a, &d).await.unwrap());
    assert!(!s.unlink_blob(&a, &d).await.unwrap());
    assert!(s.blob_linked(&b, &d).await.unwrap(), "other links survive");
    assert_eq!(
        s.blob_bytes(&d).await.unwrap(),
        Bytes::from_static(b"shared")
    );
}

pub async fn manifests_tags_and_catalog(s: Arc<dyn Storage>) {
    let a = ns("hosted", "team/app");
    let d = s.blob_put(Bytes::from_static(b"{}")).await.unwrap();
    assert_eq!(s.tags(&a).await.unwrap(), None);
    s.manifest_link(&a, &d, "application/vnd.oci.image.manifest.v1+json")
        .await
        .unwrap();
    assert_eq!(
        s.manifest_media_type(&a, &d).await.unwrap().as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    for t in ["v2", "latest", "v1"] {
        s.tag_set(&a, &t.parse().unwrap(), &d).await.unwrap();
    }
    assert_eq!(s.tags(&a).await.unwrap().unwrap(), ["latest", "v1", "v2"]);
    assert_eq!(
        s.tag_get(&a, &"v1".parse().unwrap()).await.unwrap(),
        Some(d.clone())
    );
    assert!(s.tag_delete(&a, &"v1".parse().unwrap()).await.unwrap());
    assert_eq!(s.tag_get(&a, &"v1".parse().unwrap()).await.unwrap(), None);
    let other = ns("hosted", "zeta");
    s.manifest_link(&other, &d, "x").await.unwrap();
    s.manifest_link(&ns("elsewhere", "img"), &d, "x")
        .await
        .unwrap();
    let images: Vec<String> = s
        .images(&"hosted".parse().unwrap())
        .await
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(images, ["team/app", "zeta"]);
    assert!(s.manifest_unlink(&a, &d).await.unwrap());
    assert_eq!(s.manifest_media_type(&a, &d).await.unwrap(), None);
}

pub async fn referrers_index(s: Arc<dyn Storage>) {
    let a = ns("hosted", "app");
    let subject = Digest::sha256_of(b"subject");
    let r1 = Digest::sha256_of(b"r1");
    let desc = Descriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: r1.to_string(),
        size: 2,
        artifact_type: Some("application/example".into()),
        annotations: None,
        urls: None,
        platform: None,
    };
    assert!(s.referrers(&a, &subject).await.unwrap().is_empty());
    s.referrer_add(&a, &subject, &desc).await.unwrap();
    assert_eq!(s.referrers(&a, &subject).await.unwrap(), vec![desc]);
    s.referrer_remove(&a, &subject, &r1).await.unwrap();
    assert!(s.referrers(&a, &subject).await.unwrap().is_empty());
}

macro_rules! backends {
    ($($backend:ident => $make:expr;)*) => {$(
        mod $backend {
            use super::*;
            fn make() -> (Arc<dyn Storage>, Option<tempfile::TempDir>) { $make }
            macro_rules! case {
                ($name:ident) => {
                    #[tokio::test]
                    async fn $name() {
                        let (s, _dir) = make();
                        super::$name(s).await;
                    }
                };
            }
            case!(upload_commit_and_read);
            case!(offset_mismatch_keeps_data);
            case!(digest_mismatch_stores_nothing);
            case!(broken_body_keeps_received_bytes);
            case!(sessions_are_scoped);
            case!(blobs_are_shared_but_links_are_not);
            case!(manifests_tags_and_catalog);
            case!(referrers_index);
        }
    )*};
}

backends! {
    memory => (Arc::new(super::super::memory::MemoryStorage::new()), None);
    filesystem => {
        let dir = tempfile::tempdir().unwrap();
        let s = super::super::fs::FsStorage::open(dir.path()).unwrap();
        (Arc::new(s), Some(dir))
    };
}

/// Filesystem only: an upload survives the process (a new `FsStorage` over the same root,
/// without the in-memory hash state) and still verifies.
#[tokio::test]
async fn fs_upload_resumes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let a = ns("hosted", "x");
    let id = {
        let s = super::fs::FsStorage::open(dir.path()).unwrap();
        let id = s.upload_create(&a, "tester").await.unwrap();
        s.upload_append(&a, &id, None, body(&[b"first half,"]))
            .await
            .unwrap();
        id
    };
    let s = super::fs::FsStorage::open(dir.path()).unwrap();
    assert_eq!(s.upload_size(&a, &id).await.unwrap(), 11);
    s.upload_append(&a, &id, Some(11), body(&[b" second half"]))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"first half, second half");
    s.upload_commit(&a, &id, &d).await.unwrap();
    assert!(s.blob_linked(&a, &d).await.unwrap());
}
