//! The BlobStore contract suite against a real S3 server (s3s-fs, which enforces AWS's rules
//! on part sizes and conditional PUTs), one test per case (`s3::…` with conditional PUTs,
//! `s3_unconditional::…` without), plus what only an object store can get wrong: large
//! appends going multipart, an upload continued through a second store (another core), two
//! stores racing for one offset, and a prefix keeping registries apart in one bucket.

// Test code panics on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use berth_core::oci::Digest;
use berth_core::storage::blob::s3::{S3BlobStore, S3Settings};
use berth_core::storage::blob::{new_upload_id, BlobStore};
use berth_core::storage::{ByteStream, StorageError};
use berth_tests::s3::{S3Server, ACCESS_KEY, SECRET_KEY};
use bytes::Bytes;

fn settings(server: &S3Server, prefix: &str) -> S3Settings {
    S3Settings {
        bucket: "berth".into(),
        endpoint: Some(server.endpoint.clone()),
        region: "us-east-1".into(),
        prefix: prefix.into(),
        access_key_id: Some(ACCESS_KEY.into()),
        secret_access_key: Some(SECRET_KEY.into()),
        conditional_put: true,
        ca_file: None,
        redirect: false,
        sign_payload: true,
    }
}

fn body(data: Vec<u8>) -> ByteStream {
    // In 1 MiB pieces, as a client's body arrives.
    let chunks: Vec<std::io::Result<Bytes>> = data
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// One contract case on a fresh server: a store in bucket `berth` under the case's prefix.
async fn s3_store(case: &str, conditional_put: bool) -> (S3Server, Arc<dyn BlobStore>) {
    let server = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    let mut s = settings(&server, case);
    s.conditional_put = conditional_put;
    let store = S3BlobStore::open(&s).unwrap();
    (server, Arc::new(store))
}

mod s3 {
    use super::*;

    berth_core::blob_contract!(tests | case | s3_store(case, true).await);
}

/// As for a server that ignores If-None-Match (Garage): no claims, the same contract.
mod s3_unconditional {
    use super::*;

    berth_core::blob_contract!(tests | case | s3_store(case, false).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_continues_on_another_core_and_large_appends_go_multipart() {
    let server = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    let a = S3BlobStore::open(&settings(&server, "shared")).unwrap();
    let b = S3BlobStore::open(&settings(&server, "shared")).unwrap();
    // 20 MiB then 3 MiB: the first append is three parts of a multipart upload.
    let first: Vec<u8> = (0..20u32 << 20).map(|i| (i % 251) as u8).collect();
    let second = vec![7u8; 3 << 20];
    let id = new_upload_id();
    a.upload_create(&id).await.unwrap();
    let n = a.upload_append(&id, Some(0), body(first.clone())).await;
    assert_eq!(n.unwrap(), first.len() as u64);
    // The second core sees the session and its size, and appends.
    assert_eq!(b.upload_size(&id).await.unwrap(), first.len() as u64);
    let late = b.upload_append(&id, Some(0), body(vec![1])).await;
    assert!(matches!(late, Err(StorageError::OffsetMismatch { .. })));
    let total = b
        .upload_append(&id, Some(first.len() as u64), body(second.clone()))
        .await
        .unwrap();
    assert_eq!(total, (first.len() + second.len()) as u64);
    let mut all = first;
    all.extend_from_slice(&second);
    let d = Digest::sha256_of(&all);
    // ...and the first core commits it.
    assert_eq!(a.upload_commit(&id, &d).await.unwrap(), all.len() as u64);
    assert_eq!(b.stat(&d).await.unwrap(), Some(all.len() as u64));
    assert_eq!(
        b.bytes(&d).await.unwrap().len(),
        all.len(),
        "the whole blob is stored"
    );
    assert!(a.uploads().await.unwrap().is_empty(), "nothing left behind");

    // Two cores at one offset: while A's append is still receiving its body (its claim is
    // made, its part not yet written, so the size still says 0), B's append at offset 0 is
    // refused by the claim, not by the size. (Sequenced on purpose: s3s-fs checks
    // If-None-Match before writing, not atomically as S3 does, so a true race there can let
    // both through.)
    let id = new_upload_id();
    a.upload_create(&id).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let slow: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }));
    let a = Arc::new(a);
    let writer = {
        let (a, id) = (a.clone(), id.clone());
        tokio::spawn(async move { a.upload_append(&id, Some(0), slow).await })
    };
    tx.send(Ok(Bytes::from(vec![1u8; 1000]))).await.unwrap();
    let claim = server
        .bucket_dir()
        .join(format!("shared/uploads/{id}/{:020}.claim", 0));
    while !claim.exists() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(b.upload_size(&id).await.unwrap(), 0);
    let refused = b.upload_append(&id, Some(0), body(vec![2; 1000])).await;
    assert!(
        matches!(refused, Err(StorageError::OffsetMismatch { .. })),
        "{refused:?}"
    );
    drop(tx);
    assert_eq!(writer.await.unwrap().unwrap(), 1000);
    assert_eq!(b.upload_size(&id).await.unwrap(), 1000);
    a.upload_cancel(&id).await.unwrap();

    // One part written by A, committed by B (which has no running hash: it reads it back), and
    // a wrong digest through the same path stores nothing.
    let one: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let od = Digest::sha256_of(&one);
    for (claimed, ok) in [(Digest::sha256_of(b"not it"), false), (od.clone(), true)] {
        let id = new_upload_id();
        a.upload_create(&id).await.unwrap();
        a.upload_append(&id, Some(0), body(one.clone()))
            .await
            .unwrap();
        let r = b.upload_commit(&id, &claimed).await;
        assert_eq!(r.is_ok(), ok, "{r:?}");
        assert_eq!(b.stat(&claimed).await.unwrap().is_some(), ok);
    }
    assert_eq!(a.bytes(&od).await.unwrap(), one);

    // A prefix keeps registries apart in one bucket.
    let other = S3BlobStore::open(&settings(&server, "other")).unwrap();
    assert_eq!(other.stat(&d).await.unwrap(), None);
    assert!(other.list(None, 10).await.unwrap().is_empty());
    assert!(server.bucket_dir().join("shared/blobs/sha256").exists());
}

/// An endpoint behind a private CA: HTTPS (berth-proxy terminating TLS in front of s3s-fs,
/// with a certificate from berth-certs) is refused without `ca_file` and works with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_behind_a_private_ca_needs_its_ca_file() {
    let server = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    let pki = tempfile::tempdir().unwrap();
    let ca = pki.path().join("ca");
    let upstream = server.endpoint.trim_start_matches("http://").to_owned();
    let edge = tokio::task::spawn_blocking({
        let (ca, leaf) = (ca.clone(), pki.path().join("leaf"));
        move || {
            berth_tests::edge::make_ca(&ca);
            let (cert, key) = berth_tests::edge::issue(&ca, &leaf, "s3", &["localhost"], &[]);
            berth_tests::edge::Edge::start(1, |p| {
                format!(
                    "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    \
                     tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
                    p[0],
                    cert.display(),
                    key.display()
                )
            })
        }
    })
    .await
    .unwrap();
    let mut tls = settings(&server, "tls");
    tls.endpoint = Some(format!("https://localhost:{}", edge.ports[0]));
    let untrusted = S3BlobStore::open(&tls).unwrap();
    assert!(
        untrusted.check().await.is_err(),
        "a private CA is not trusted by default"
    );
    tls.ca_file = Some(ca.join("ca.crt"));
    let trusted = Arc::new(S3BlobStore::open(&tls).unwrap());
    trusted.check().await.unwrap();
    let d = trusted.put(Bytes::from_static(b"over tls")).await.unwrap();
    assert_eq!(trusted.bytes(&d).await.unwrap(), &b"over tls"[..]);
    drop(edge);
}

/// A one-part upload written by one core and committed by another: the second finishes the
/// hash from the first core's checkpoint instead of reading the part back, but only when the
/// checkpoint names the part's ETag. Shown by doctoring checkpoints in the bucket: one that
/// names the right ETag but carries another hash is believed (the commit is refused), one
/// with a wrong ETag is ignored (the part is read back and the commit succeeds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_elsewhere_uses_the_checkpoint_of_the_very_part() {
    let server = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    let a = S3BlobStore::open(&settings(&server, "cp")).unwrap();
    let b = S3BlobStore::open(&settings(&server, "cp")).unwrap();
    let x: Vec<u8> = (0..3_000_000u32).map(|i| (i % 239) as u8).collect();
    let y = vec![9u8; 1000];
    let checkpoint = |id: &str, end: usize| {
        server
            .bucket_dir()
            .join(format!("cp/uploads/{id}/{end:020}.sha256"))
    };
    let mut ids = Vec::new();
    for data in [&x, &y, &x] {
        let id = new_upload_id();
        a.upload_create(&id).await.unwrap();
        a.upload_append(&id, Some(0), body(data.clone()))
            .await
            .unwrap();
        assert!(checkpoint(&id, data.len()).exists(), "no checkpoint");
        ids.push(id);
    }
    let read = |id: &str, end: usize| std::fs::read(checkpoint(id, end)).unwrap();
    let (cx, cy) = (read(&ids[0], x.len()), read(&ids[1], y.len()));
    // [ETag length][ETag][state]: x's ETag with y's state.
    let (ex, ey) = (usize::from(cx[0]), usize::from(cy[0]));
    assert!(ex > 0, "the part's ETag is recorded");
    let forged = [&cx[..=ex], &cy[1 + ey..]].concat();
    std::fs::write(checkpoint(&ids[0], x.len()), forged).unwrap();
    let believed = b.upload_commit(&ids[0], &Digest::sha256_of(&x)).await;
    assert!(
        matches!(believed, Err(StorageError::DigestMismatch { .. })),
        "the checkpoint was not used: {believed:?}"
    );
    // The same state under an ETag that is not the part's: read back, committed.
    let cx2 = read(&ids[2], x.len());
    let ex2 = usize::from(cx2[0]);
    let wrong = [&[3u8][..], b"\"0\"", &cx2[1 + ex2..]].concat();
    std::fs::write(checkpoint(&ids[2], x.len()), wrong).unwrap();
    let size = b
        .upload_commit(&ids[2], &Digest::sha256_of(&x))
        .await
        .unwrap();
    assert_eq!(size, x.len() as u64);
    assert_eq!(b.bytes(&Digest::sha256_of(&x)).await.unwrap(), x);
}
