//! Single-flight blob fetches for proxy repositories.
//!
//! The first client to ask for an uncached blob starts one fetch from the remote; the bytes go
//! into an upload session as they arrive, and every client — the first one and any that ask
//! meanwhile — reads that session from its own offset as it grows, so nobody waits for the
//! whole layer. When the remote is done, the session is committed (digest verified, data made
//! durable); a failed or truncated transfer is discarded and every reader sees an error, so a
//! bad blob never reaches the cache.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::oci::Digest;
use crate::storage::{ByteStream, Namespace, Storage, StorageError};

/// Bytes gathered before they are appended to the session (and shown to readers).
const APPEND_BATCH: usize = 1 << 20;
/// Batches read from the remote ahead of the cache writes.
const QUEUE: usize = 8;
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

/// How much of the most recently cached bytes a fetch keeps in memory, so clients that keep
/// up are served without reading back what was just written.
const RECENT_WINDOW: usize = 16 << 20;

/// A fetch in progress.
pub struct Fetch {
    pub ns: Namespace,
    pub upload: String,
    pub digest: Digest,
    pub state: watch::Receiver<FetchState>,
    /// The last pieces appended, `(offset, bytes)`, oldest first; only for bytes already on
    /// disk (so a reader never sees bytes the cache might not keep).
    recent: Mutex<VecDeque<(u64, Bytes)>>,
}

impl Fetch {
    pub fn new(
        ns: Namespace,
        upload: String,
        digest: Digest,
        state: watch::Receiver<FetchState>,
    ) -> Fetch {
        Fetch {
            ns,
            upload,
            digest,
            state,
            recent: Mutex::new(VecDeque::new()),
        }
    }

    fn remember(&self, offset: u64, piece: Bytes) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.push_back((offset, piece));
        while r.iter().map(|(_, b)| b.len()).sum::<usize>() > RECENT_WINDOW && r.len() > 1 {
            r.pop_front();
        }
    }

    /// Up to `max` bytes at `offset` from memory, if that part is still held.
    fn recent_at(&self, offset: u64, max: u64) -> Option<Bytes> {
        let r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.iter().find_map(|(start, b)| {
            let end = start + b.len() as u64;
            (offset >= *start && offset < end).then(|| {
                let from = (offset - start) as usize;
                let to = from + ((end - offset).min(max) as usize);
                b.slice(from..to)
            })
        })
    }
}

/// Copies `body` into the session, publishing progress; commits at the end.
///
/// Reading the remote and writing the cache overlap: a reader task gathers the remote's bytes
/// into batches while this task appends the previous ones, so the remote is never kept waiting
/// on the disk or on hashing.
pub async fn run(
    storage: Arc<dyn Storage>,
    fetch: Arc<Fetch>,
    tx: watch::Sender<FetchState>,
    mut body: ByteStream,
) {
    // Batches in flight between the two tasks: bounds memory to QUEUE × APPEND_BATCH.
    let (batches, mut incoming) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(QUEUE);
    let reader = tokio::spawn(async move {
        let mut batch = BytesMut::with_capacity(APPEND_BATCH);
        let mut seen = 0u64;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    seen += c.len() as u64;
                    batch.extend_from_slice(&c);
                    if batch.len() >= APPEND_BATCH
                        && batches.send(Ok(batch.split().freeze())).await.is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let _ = batches
                        .send(Err(format!(
                            "remote transfer broke after {seen} bytes: {e}"
                        )))
                        .await;
                    return;
                }
            }
        }
        if !batch.is_empty() {
            let _ = batches.send(Ok(batch.freeze())).await;
        }
    });
    let mut written = 0u64;
    let outcome: Result<(), String> = async {
        while let Some(piece) = incoming.recv().await {
            let piece = piece?;
            let n = piece.len() as u64;
            let one: ByteStream = Box::pin(futures_util::stream::iter([Ok(piece.clone())]));
            storage
                .upload_append(&fetch.ns, &fetch.upload, Some(written), one)
                .await
                .map_err(|e| format!("caching failed: {e}"))?;
            fetch.remember(written, piece);
            written += n;
            tx.send_modify(|s| s.written = written);
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
    reader.abort();
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
                    if let Some(b) = fetch.recent_at(offset, n) {
                        let len = b.len() as u64;
                        return Some((Ok(b), (offset + len, rx, storage, fetch)));
                    }
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
