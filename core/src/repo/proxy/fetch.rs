//! Single-flight blob fetches for proxy repositories.
//!
//! The first client to ask for an uncached blob starts one fetch from the remote; the bytes go
//! into an upload session as they arrive, and every client — the first one and any that ask
//! meanwhile — reads that session from its own offset as it grows, so nobody waits for the
//! whole layer. When the remote is done, the session is committed (digest verified, data made
//! durable); a failed or truncated transfer is discarded and every reader sees an error, so a
//! bad blob never reaches the cache.

use std::io;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::oci::Digest;
use crate::storage::{ByteStream, Namespace, Storage, StorageError};

/// Bytes gathered before they are appended to the session (and shown to readers).
const APPEND_BATCH: usize = 256 * 1024;
/// Largest piece a reader takes at once.
const READ_CHUNK: u64 = 1 << 20;

/// Progress of one fetch, broadcast to its readers.
#[derive(Clone, Debug, Default)]
pub struct FetchState {
    /// Bytes durably appended to the session so far.
    pub written: u64,
    /// The remote's Content-Length, once known.
    pub total: Option<u64>,
    /// Set once: `Ok` after the commit, `Err` with the reason otherwise.
    pub done: Option<Result<(), String>>,
}

/// A fetch in progress.
pub struct Fetch {
    pub ns: Namespace,
    pub upload: String,
    pub digest: Digest,
    pub state: watch::Receiver<FetchState>,
}

/// Copies `body` into the session, publishing progress; commits at the end.
pub async fn run(
    storage: Arc<dyn Storage>,
    fetch: Arc<Fetch>,
    tx: watch::Sender<FetchState>,
    mut body: ByteStream,
) {
    let mut written = 0u64;
    let mut batch = BytesMut::with_capacity(APPEND_BATCH);
    let outcome: Result<(), String> = async {
        loop {
            let next = body.next().await;
            let finished = next.is_none();
            if let Some(chunk) = next {
                let chunk = chunk.map_err(|e| {
                    format!(
                        "remote transfer broke after {} bytes: {e}",
                        written + batch.len() as u64
                    )
                })?;
                batch.extend_from_slice(&chunk);
            }
            if batch.len() >= APPEND_BATCH || (finished && !batch.is_empty()) {
                let piece = batch.split().freeze();
                let n = piece.len() as u64;
                let one: ByteStream = Box::pin(futures_util::stream::iter([Ok(piece)]));
                storage
                    .upload_append(&fetch.ns, &fetch.upload, Some(written), one)
                    .await
                    .map_err(|e| format!("caching failed: {e}"))?;
                written += n;
                tx.send_modify(|s| s.written = written);
            }
            if finished {
                break;
            }
        }
        storage
            .upload_commit(&fetch.ns, &fetch.upload, &fetch.digest)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                StorageError::DigestMismatch { actual, .. } => {
                    format!(
                        "remote sent {written} bytes with digest {actual}, not {}; nothing cached",
                        fetch.digest
                    )
                }
                other => format!("caching failed: {other}"),
            })
    }
    .await;
    if let Err(e) = &outcome {
        tracing::warn!(digest = %fetch.digest, error = %e, "proxy fetch failed");
        let _ = storage.upload_cancel(&fetch.ns, &fetch.upload).await;
    }
    tx.send_modify(|s| s.done = Some(outcome));
}

/// A stream of `start..end` of the blob, following the fetch as it progresses.
pub fn follow(storage: Arc<dyn Storage>, fetch: Arc<Fetch>, start: u64, end: u64) -> ByteStream {
    let rx = fetch.state.clone();
    let stream = futures_util::stream::unfold(
        (start, rx, storage, fetch),
        move |(offset, mut rx, storage, fetch)| async move {
            if offset >= end {
                return None;
            }
            loop {
                let st = rx.borrow_and_update().clone();
                if offset < st.written {
                    let n = (st.written.min(end) - offset).min(READ_CHUNK);
                    match storage
                        .upload_read(&fetch.ns, &fetch.upload, offset, n)
                        .await
                    {
                        Ok(b) => return Some((Ok(b), (offset + n, rx, storage, fetch))),
                        // Committed (renamed into the blob store) or discarded meanwhile: the
                        // outcome is about to be published; wait for it below.
                        Err(_) if st.done.is_none() => {
                            if rx.changed().await.is_err() {
                                return Some((
                                    Err(io::Error::other("fetch abandoned")),
                                    (end, rx, storage, fetch),
                                ));
                            }
                            continue;
                        }
                        Err(_) => {}
                    }
                }
                match &st.done {
                    Some(Ok(())) => {
                        let n = (end - offset).min(READ_CHUNK);
                        let item = read_committed(storage.as_ref(), &fetch.digest, offset, n).await;
                        let next = if item.is_ok() { offset + n } else { end };
                        return Some((item, (next, rx, storage, fetch)));
                    }
                    Some(Err(e)) => {
                        return Some((Err(io::Error::other(e.clone())), (end, rx, storage, fetch)))
                    }
                    None => {
                        if rx.changed().await.is_err() {
                            return Some((
                                Err(io::Error::other("fetch abandoned")),
                                (end, rx, storage, fetch),
                            ));
                        }
                    }
                }
            }
        },
    );
    Box::pin(stream)
}

async fn read_committed(
    storage: &dyn Storage,
    digest: &Digest,
    offset: u64,
    n: u64,
) -> io::Result<Bytes> {
    let mut s = storage
        .blob_read(digest, offset, n)
        .await
        .map_err(io::Error::other)?;
    let mut out = BytesMut::with_capacity(n as usize);
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c?);
    }
    Ok(out.freeze())
}
