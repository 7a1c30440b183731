//! The BlobStore contract: what every backend (filesystem, memory, later S3) must do, including
//! under concurrency. Public behind the `contract-suite` feature so each backend's tests run
//! exactly these cases.

// The suite panics on purpose when a backend breaks the contract.
#![allow(clippy::unwrap_used)]

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use super::{new_upload_id, BlobStore};
use crate::oci::Digest;
use crate::storage::{ByteStream, StorageError};

fn body(chunks: &[&[u8]]) -> ByteStream {
    let owned: Vec<io::Result<Bytes>> = chunks
        .iter()
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(owned))
}

async fn read_all(s: &dyn BlobStore, d: &Digest, start: u64, len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = s.read(d, start, len).await.unwrap();
    while let Some(c) = stream.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// The contract's cases, listed once: `blob_contract!(run)` defines [`run`] (every case in
/// turn), and a backend's test file writes `berth_core::blob_contract!(tests |case| open(case));` to
/// get one `#[tokio::test]` per case, named after it, each on a fresh store: the expression
/// gives `(keep, store)`, `keep` (a temporary directory, a server) living as long as the case;
/// `case` is the case's name (e.g. for a prefix of its own in a shared bucket).
#[macro_export]
macro_rules! blob_contract {
    (@with [run] $($case:ident),*) => {
        /// Runs every case against `store`, one after another.
        pub async fn run(store: Arc<dyn BlobStore>) {
            $( $crate::storage::blob::suite::$case(store.clone()).await; )*
        }
    };
    (@with [tests |$name:ident| $open:expr] $($case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let $name: &str = stringify!($case);
            let _ = $name;
            let (_keep, store): (_, ::std::sync::Arc<dyn $crate::storage::blob::BlobStore>) =
                $open;
            $crate::storage::blob::suite::$case(store).await;
        }
    )*};
    ($($how:tt)*) => {
        $crate::blob_contract!(@with [$($how)*]
            upload_commit_and_read,
            offset_mismatch_keeps_data,
            digest_mismatch_stores_nothing,
            broken_body_keeps_received_bytes,
            large_appends_verify_every_byte,
            small_blobs_list_and_delete,
            commit_racing_cancel,
            concurrent_commits_of_one_blob);
    };
}

blob_contract!(run);

pub async fn upload_commit_and_read(s: Arc<dyn BlobStore>) {
    let s = s.as_ref();
    let id = new_upload_id();
    s.upload_create(&id).await.unwrap();
    assert_eq!(s.upload_size(&id).await.unwrap(), 0);
    let n = s
        .upload_append(&id, Some(0), body(&[b"hello ", b"wor"]))
        .await;
    assert_eq!(n.unwrap(), 9);
    assert_eq!(
        s.upload_append(&id, None, body(&[b"ld"])).await.unwrap(),
        11
    );
    assert_eq!(s.upload_read(&id, 6, 5).await.unwrap(), &b"world"[..]);
    let d = Digest::sha256_of(b"hello world");
    assert_eq!(s.stat(&d).await.unwrap(), None, "not stored before commit");
    assert_eq!(s.upload_commit(&id, &d).await.unwrap(), 11);
    assert_eq!(s.stat(&d).await.unwrap(), Some(11));
    assert_eq!(read_all(s, &d, 0, 11).await, b"hello world");
    assert_eq!(read_all(s, &d, 6, 5).await, b"world");
    assert!(matches!(
        s.upload_size(&id).await,
        Err(StorageError::NotFound)
    ));
    assert!(!s.uploads().await.unwrap().contains(&id), "session is gone");
}

pub async fn offset_mismatch_keeps_data(s: Arc<dyn BlobStore>) {
    let s = s.as_ref();
    let id = new_upload_id();
    s.upload_create(&id).await.unwrap();
    s.upload_append(&id, Some(0), body(&[b"abc"]))
        .await
        .unwrap();
    let e = s
        .upload_append(&id, Some(5), body(&[b"zzz"]))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        StorageError::OffsetMismatch {
            current: 3,
            requested: 5
        }
    ));
    assert_eq!(s.upload_size(&id).await.unwrap(), 3);
    s.upload_cancel(&id).await.unwrap();
    s.upload_cancel(&id).await.unwrap();
}

pub async fn digest_mismatch_stores_nothing(s: Arc<dyn BlobStore>) {
    let s = s.as_ref();
    let id = new_upload_id();
    s.upload_create(&id).await.unwrap();
    s.upload_append(&id, Some(0), body(&[b"actual"]))
        .await
        .unwrap();
    let claimed = Digest::sha256_of(b"claimed");
    let e = s.upload_commit(&id, &claimed).await.unwrap_err();
    assert!(matches!(e, StorageError::DigestMismatch { .. }));
    assert_eq!(s.stat(&claimed).await.unwrap(), None);
    assert_eq!(s.stat(&Digest::sha256_of(b"actual")).await.unwrap(), None);
}

pub async fn broken_body_keeps_received_bytes(s: Arc<dyn BlobStore>) {
    let s = s.as_ref();
    let id = new_upload_id();
    s.upload_create(&id).await.unwrap();
    let broken: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"first ")),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ]));
    let e = s.upload_append(&id, Some(0), broken).await.unwrap_err();
    assert!(matches!(e, StorageError::Body(_)));
    assert_eq!(
        s.upload_size(&id).await.unwrap(),
        6,
        "received bytes are kept"
    );
    s.upload_append(&id, Some(6), body(&[b"second"]))
        .await
        .unwrap();
    let d = Digest::sha256_of(b"first second");
    assert_eq!(s.upload_commit(&id, &d).await.unwrap(), 12);
}

/// Appends of several MiB (the filesystem hashes those on a thread of its own): the digest
/// covers every byte, across appends, and one changed byte is caught.
pub async fn large_appends_verify_every_byte(s: Arc<dyn BlobStore>) {
    let s = s.as_ref();
    let data: Vec<u8> = (0..10u32 << 20).map(|i| (i % 251) as u8).collect();
    let good = Digest::sha256_of(&data);
    for flip in [None, Some(7 << 20)] {
        let mut sent = data.clone();
        if let Some(at) = flip {
            sent[at] ^= 1;
        }
        let id = new_upload_id();
        s.upload_create(&id).await.unwrap();
        let (first, second) = sent.split_at(6 << 20);
        for (at, part) in [(0, first), (first.len(), second)] {
            let chunks: Vec<&[u8]> = part.chunks(256 << 10).collect();
            let size = s.upload_append(&id, Some(at as u64), body(&chunks)).await;
            assert_eq!(size.unwrap(), (at + part.len()) as u64);
        }
        match (flip, s.upload_commit(&id, &good).await) {
            (None, Ok(size)) => assert_eq!(size, data.len() as u64),
            (Some(_), Err(StorageError::DigestMismatch { .. })) => {}
            (flip, other) => panic!("flip {flip:?}: {other:?}"),
        }
    }
    assert_eq!(
        read_all(s, &good, 9 << 20, 5).await,
        &data[9 << 20..(9 << 20) + 5]
    );
}

pub async fn small_blobs_list_and_delete(s: Arc<dyn BlobStore>) {
    let s = s.as_ref();
    let d = s
        .put(Bytes::from_static(b"{\"manifest\":1}"))
        .await
        .unwrap();
    assert_eq!(d, Digest::sha256_of(b"{\"manifest\":1}"));
    assert_eq!(
        s.put(Bytes::from_static(b"{\"manifest\":1}"))
            .await
            .unwrap(),
        d
    );
    assert_eq!(s.bytes(&d).await.unwrap(), &b"{\"manifest\":1}"[..]);
    let all = s.list(None, usize::MAX).await.unwrap();
    assert!(all.contains(&d));
    assert!(
        all.windows(2).all(|w| w[0].to_string() < w[1].to_string()),
        "digest order"
    );
    let first = s.list(None, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    let rest = s.list(Some(&first[0]), usize::MAX).await.unwrap();
    assert_eq!(rest.len() + 1, all.len(), "paging covers everything once");
    assert!(s.delete(&d).await.unwrap());
    assert!(!s.delete(&d).await.unwrap());
    assert!(matches!(s.bytes(&d).await, Err(StorageError::NotFound)));
}

/// A commit and a cancel of one session at once: either the blob is stored whole and verified,
/// or nothing is; never a partial blob, never a panic.
pub async fn commit_racing_cancel(s: Arc<dyn BlobStore>) {
    for round in 0..8u8 {
        let id = new_upload_id();
        let data = vec![round; 64 * 1024];
        let d = Digest::sha256_of(&data);
        s.upload_create(&id).await.unwrap();
        s.upload_append(&id, Some(0), body(&[&data])).await.unwrap();
        let (a, b) = (s.clone(), s.clone());
        let (id1, id2, d1) = (id.clone(), id.clone(), d.clone());
        let commit = tokio::spawn(async move { a.upload_commit(&id1, &d1).await });
        let cancel = tokio::spawn(async move { b.upload_cancel(&id2).await });
        let committed = commit.await.unwrap();
        cancel.await.unwrap().unwrap();
        match committed {
            Ok(size) => {
                assert_eq!(size, data.len() as u64);
                assert_eq!(read_all(s.as_ref(), &d, 0, size).await, data);
            }
            Err(StorageError::NotFound) => assert_eq!(s.stat(&d).await.unwrap(), None),
            Err(e) => panic!("commit racing cancel: {e}"),
        }
        s.delete(&d).await.unwrap();
    }
}

/// Two sessions carrying the same content committed at once: both succeed, one copy is kept.
pub async fn concurrent_commits_of_one_blob(s: Arc<dyn BlobStore>) {
    let data = vec![42u8; 256 * 1024];
    let d = Digest::sha256_of(&data);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (s, data, d) = (s.clone(), data.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            let id = new_upload_id();
            s.upload_create(&id).await.unwrap();
            s.upload_append(&id, Some(0), body(&[&data])).await.unwrap();
            s.upload_commit(&id, &d).await.unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), data.len() as u64);
    }
    assert_eq!(read_all(s.as_ref(), &d, 0, data.len() as u64).await, data);
}

#[cfg(test)]
mod memory {
    use std::sync::Arc;

    use crate::storage::blob::memory::MemoryBlobStore;

    crate::blob_contract!(tests | _case | ((), Arc::new(MemoryBlobStore::new())));
}

#[cfg(test)]
mod filesystem {
    use std::sync::Arc;

    use crate::storage::blob::fs::FsBlobStore;

    crate::blob_contract!(
        tests | _case | {
            let dir = tempfile::tempdir().unwrap();
            let store = FsBlobStore::open(dir.path()).unwrap();
            (dir, Arc::new(store))
        }
    );
}
