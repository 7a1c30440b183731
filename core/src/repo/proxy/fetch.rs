//! Single-flight blob fetches for proxy repositories.
//!
//! The first client to ask for an uncached blob starts one fetch; every client — the first one
//! and any that ask meanwhile — joins it. The fetch runs in its own task (a client that goes
//! away does not cancel it for the others): it asks the remote, writes the bytes into an upload
//! session of the local hosted store as they arrive, and every client reads that session from
//! its own offset as it grows, so nobody waits for the whole layer (but for its last byte, held
//! back until the commit has verified the whole: a blob the cache rejects never reaches a
//! client complete). When the remote is done,
//! the session is committed through the hosted store (digest verified, data made durable); a
//! failed or truncated transfer is discarded and every reader sees an error, so a bad blob
//! never reaches the cache.
//!
//! Across cores, a fetch holds a lease row (`proxy-fetch/<repository>/<digest>`) in the
//! metadata store while it runs: another core asked for the same cold blob waits until it is
//! cached (its clients then read it from the shared store), so N cores ask the remote once. A
//! core killed mid-fetch stops renewing, and a waiting core takes over once the lease expires.
//!
//! No lock is held across any I/O: the in-flight map is locked only to find or register a
//! fetch (audit: it was held across the remote round trip, so one silent remote wedged every
//! uncached blob of the repository).

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::Method;
use tokio::sync::watch;

use super::answer::Answer;
use super::remote::RemoteError;
use super::{Inner, PROXY_CLIENT};
use crate::lifecycle::lease::{self, LeaseError};
use crate::oci::{Digest, ImageName};
use crate::repo::{RepoError, Repository};
use crate::storage::metadata::cluster::process_name;
use crate::storage::ByteStream;

/// Bytes gathered before they are appended to the session (and shown to readers).
const APPEND_BATCH: usize = 1 << 20;
/// Batches read from the remote ahead of the cache writes.
const QUEUE: usize = 8;
/// How often a core waiting for another core's fetch of a blob looks whether it is cached.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest a core waits for another core's fetch (which renews its claim while it runs).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Largest piece a reader takes at once.
const READ_CHUNK: u64 = 1 << 20;
/// How much of the most recently cached bytes a fetch keeps in memory, so clients that keep
/// up are served without reading back what was just written.
const RECENT_WINDOW: usize = 16 << 20;

/// How a fetch ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Verified and kept: serve it from the local store.
    Cached,
    /// The remote does not have it.
    Missing,
    /// The remote could not or would not answer (rate-limited, refused, unreachable).
    Refused(RemoteError),
    /// Caching what it sent failed, or the fetch was abandoned: the message says which.
    Failed(String),
}

/// Progress of one fetch, broadcast to its readers.
#[derive(Clone, Debug, Default)]
pub struct FetchState {
    /// The upload session the bytes go into, once the remote has answered.
    pub upload: Option<String>,
    /// Bytes durably appended to the session so far.
    pub written: u64,
    /// The remote's Content-Length, once known.
    pub total: Option<u64>,
    /// Set once, at the end.
    pub done: Option<Outcome>,
}

/// A fetch in progress.
pub struct Fetch {
    pub image: ImageName,
    pub digest: Digest,
    pub state: watch::Receiver<FetchState>,
    /// The last pieces appended, `(offset, bytes)`, oldest first; only for bytes already on
    /// disk (so a reader never sees bytes the cache might not keep). Bounded: RECENT_WINDOW.
    recent: Mutex<VecDeque<(u64, Bytes)>>,
}

impl Fetch {
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

    /// Waits until the remote has answered: the state then has an upload session or an end.
    pub async fn started(&self) -> FetchState {
        let mut rx = self.state.clone();
        loop {
            let st = rx.borrow_and_update().clone();
            if st.upload.is_some() || st.done.is_some() {
                return st;
            }
            if rx.changed().await.is_err() {
                return FetchState {
                    done: Some(Outcome::Failed("the fetch was abandoned".into())),
                    ..st
                };
            }
        }
    }
}

impl Inner {
    /// Joins the fetch of `digest`, or starts one.
    pub(super) fn fetch(self: &Arc<Self>, image: &ImageName, digest: &Digest) -> Arc<Fetch> {
        let (tx, rx) = watch::channel(FetchState::default());
        let fetch = {
            let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = inflight.get(digest) {
                return f.clone();
            }
            let f = Arc::new(Fetch {
                image: image.clone(),
                digest: digest.clone(),
                state: rx,
                recent: Mutex::new(VecDeque::new()),
            });
            inflight.insert(digest.clone(), f.clone());
            f
        };
        let inner = self.clone();
        let task_fetch = fetch.clone();
        tokio::spawn(async move {
            let outcome = inner.run(&task_fetch, &tx).await;
            match &outcome {
                Outcome::Failed(e) => {
                    tracing::warn!(repository = %inner.name, digest = %task_fetch.digest, error = %e, "proxy fetch failed")
                }
                Outcome::Refused(e) => {
                    tracing::warn!(repository = %inner.name, digest = %task_fetch.digest, error = %e, "proxy fetch failed")
                }
                Outcome::Cached | Outcome::Missing => {}
            }
            tx.send_modify(|s| s.done = Some(outcome));
            let mut inflight = inner.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if inflight
                .get(&task_fetch.digest)
                .is_some_and(|f| Arc::ptr_eq(f, &task_fetch))
            {
                inflight.remove(&task_fetch.digest);
            }
        });
        fetch
    }

    /// One fetch, start to end, holding one of the repository's fetch slots and the cluster's
    /// claim on the blob: while another core fetches it, this one waits for that core to cache
    /// it (or to give up, and then fetches it itself).
    async fn run(&self, f: &Fetch, tx: &watch::Sender<FetchState>) -> Outcome {
        let Ok(_slot) = self.fetch_slots.acquire().await else {
            return Outcome::Failed("the repository is shutting down".into());
        };
        let meta = self.local.stores().meta.clone();
        let claim = format!("proxy-fetch/{}/{}", self.name, f.digest);
        let deadline = tokio::time::Instant::now() + CLAIM_WAIT;
        loop {
            // Another fetch (here or on another core) may have cached it meanwhile.
            if self.local.blob_size(&f.image, &f.digest).await.is_ok() {
                return Outcome::Cached;
            }
            let work = self.fetch_remote(f, tx);
            match lease::hold(meta.as_ref(), &claim, process_name(), work).await {
                Ok(outcome) => return outcome,
                Err(LeaseError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(CLAIM_POLL).await;
                }
                Err(LeaseError::Held { holder, .. }) => {
                    return Outcome::Failed(format!(
                        "{holder} has been fetching this blob for longer than {CLAIM_WAIT:?}"
                    ))
                }
                Err(e @ LeaseError::Lost { .. }) => return Outcome::Failed(e.to_string()),
                Err(e @ LeaseError::Store { .. }) => {
                    // Without the store's claim, fetch anyway: a duplicate fetch beats none.
                    tracing::warn!(error = %e, "fetching without the cluster's claim");
                    return self.fetch_remote(f, tx).await;
                }
            }
        }
    }

    /// Asks the remote and caches what it sends.
    async fn fetch_remote(&self, f: &Fetch, tx: &watch::Sender<FetchState>) -> Outcome {
        let rest = format!("blobs/{}", f.digest);
        let path = self.path(&f.image, &rest);
        let resp = match self
            .remote
            .ask(Method::GET, &path, None, &self.scope(&f.image), &rest)
            .await
        {
            Ok(Answer::Found(r)) => r,
            Ok(Answer::Missing) => {
                self.remember_missing(format!("b:{}:{}", f.image, f.digest));
                return Outcome::Missing;
            }
            Err(e) => return Outcome::Refused(e),
        };
        let total = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let id = match self.local.upload_start(&f.image, PROXY_CLIENT).await {
            Ok(id) => id,
            Err(e) => return Outcome::Failed(format!("caching failed: {e}")),
        };
        tx.send_modify(|s| {
            s.upload = Some(id.clone());
            s.total = total;
        });
        let body = self.remote.body_stream(resp);
        match self.copy(f, &id, tx, body).await {
            Ok(()) => Outcome::Cached,
            Err(e) => {
                let _ = self.local.upload_cancel(&f.image, &id).await;
                Outcome::Failed(e)
            }
        }
    }

    /// Copies `body` into the session, publishing progress, and commits it.
    ///
    /// Reading the remote and writing the cache overlap: a reader task gathers the remote's
    /// bytes into batches while this task appends the previous ones, so the remote is never
    /// kept waiting on the disk or on hashing.
    async fn copy(
        &self,
        f: &Fetch,
        id: &str,
        tx: &watch::Sender<FetchState>,
        mut body: ByteStream,
    ) -> Result<(), String> {
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
                        let broke = format!("remote transfer broke after {seen} bytes: {e}");
                        let _ = batches.send(Err(broke)).await;
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = batches.send(Ok(batch.freeze())).await;
            }
        });
        let result = async {
            let mut written = 0u64;
            while let Some(piece) = incoming.recv().await {
                let piece = piece?;
                let n = piece.len() as u64;
                let one: ByteStream = Box::pin(futures_util::stream::iter([Ok(piece.clone())]));
                self.local
                    .upload_append(&f.image, id, Some(written), one)
                    .await
                    .map_err(|e| format!("caching failed: {e}"))?;
                f.remember(written, piece);
                written += n;
                tx.send_modify(|s| s.written = written);
            }
            match self.local.upload_finish(&f.image, id, &f.digest).await {
                Ok(_) => Ok(()),
                Err(
                    e @ (RepoError::DigestMismatch { .. }
                    | RepoError::UnsupportedDigest(_)
                    | RepoError::BodyEnded(_)),
                ) => Err(format!(
                    "remote {} sent {written} bytes that are not {}: {e}; nothing cached",
                    self.url(),
                    f.digest,
                )),
                Err(e) => Err(format!("caching failed: {e}")),
            }
        }
        .await;
        reader.abort();
        result
    }

    /// A stream of `start..end` of the blob, following the fetch as it progresses.
    pub(super) fn follow(self: &Arc<Self>, fetch: Arc<Fetch>, start: u64, end: u64) -> ByteStream {
        let rx = fetch.state.clone();
        let inner = self.clone();
        let stream = futures_util::stream::unfold(
            (start, rx, inner, fetch),
            move |(offset, mut rx, inner, fetch)| async move {
                if offset >= end {
                    return None;
                }
                let item = inner.next_piece(&fetch, &mut rx, offset, end).await;
                let next = match &item {
                    Ok(b) => offset + b.len() as u64,
                    Err(_) => end,
                };
                Some((item, (next, rx, inner, fetch)))
            },
        );
        Box::pin(stream)
    }

    /// The next piece at `offset`: from memory, from the growing session, or — once the fetch
    /// is committed — from the store; waits for progress when nothing new is there yet.
    async fn next_piece(
        &self,
        fetch: &Fetch,
        rx: &mut watch::Receiver<FetchState>,
        offset: u64,
        end: u64,
    ) -> io::Result<Bytes> {
        loop {
            let st = rx.borrow_and_update().clone();
            let shown = visible(&st);
            if let (true, Some(id)) = (offset < shown, &st.upload) {
                let n = (shown.min(end) - offset).min(READ_CHUNK);
                if let Some(b) = fetch.recent_at(offset, n) {
                    return Ok(b);
                }
                // An error means committed (moved into the blob store) or discarded meanwhile:
                // the outcome is published, or about to be; it is handled below.
                if let Ok(b) = self.local.upload_read(id, offset, n).await {
                    return Ok(b);
                }
            }
            match &st.done {
                Some(Outcome::Cached) => {
                    let n = (end - offset).min(READ_CHUNK);
                    return self.read_cached(fetch, offset, n).await;
                }
                Some(Outcome::Failed(e)) => return Err(io::Error::other(e.clone())),
                Some(Outcome::Refused(e)) => return Err(io::Error::other(e.to_string())),
                Some(Outcome::Missing) => return Err(io::Error::other("the remote lost the blob")),
                None => {
                    if rx.changed().await.is_err() {
                        return Err(io::Error::other("fetch abandoned"));
                    }
                }
            }
        }
    }

    async fn read_cached(&self, fetch: &Fetch, offset: u64, n: u64) -> io::Result<Bytes> {
        let mut s = self
            .local
            .blob_read(&fetch.image, &fetch.digest, offset, n)
            .await
            .map_err(io::Error::other)?;
        let mut out = BytesMut::with_capacity(n as usize);
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out.freeze())
    }
}

/// How far readers may read the session before the fetch ends: what is on disk, but not the
/// last byte of a blob whose length is known until the commit has verified it (a client that
/// got every byte of a blob the cache then rejects would hold a complete, wrong layer); once
/// the fetch failed, nothing more.
fn visible(st: &FetchState) -> u64 {
    match (&st.done, st.total) {
        (Some(Outcome::Cached), _) | (None, None) => st.written,
        (Some(_), _) => 0,
        (None, Some(total)) => st.written.min(total.saturating_sub(1)),
    }
}
