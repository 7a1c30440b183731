//! Single-flight blob fetches for proxy repositories.
//!
//! The first client to ask for an uncached blob starts one fetch; every client — the first one
//! and any that ask meanwhile — joins it. The fetch runs in its own task (a client that goes
//! away does not cancel it for the others): it asks the remote and hands each piece it sends
//! both to the clients, from memory (see `window`), and to the cache, which hashes and writes
//! it into an upload session of the local hosted store on a thread of its own. So clients
//! get the bytes at the remote's pace, not the disk's, and the remote is asked once (CNCF
//! Distribution asks it twice, once for the client and once for its cache). The last byte is
//! held back until the commit has verified the whole: a blob the cache rejects never reaches
//! a client complete. When the remote is done, the session is committed through the hosted
//! store (digest verified, data made durable); a failed or truncated transfer is discarded and
//! every reader sees an error, so a bad blob never reaches the cache.
//!
//! Across cores, a fetch holds a lease row (`proxy-fetch/<repository>/<digest>`) in the
//! metadata store while it runs: another core asked for the same cold blob waits until it is
//! cached (its clients then read it from the shared store), so N cores ask the remote once. A
//! core killed mid-fetch stops renewing, and a waiting core takes over once the lease expires.
//!
//! No lock is held across any I/O: the in-flight map is locked only to find or register a
//! fetch (audit: it was held across the remote round trip, so one silent remote wedged every
//! uncached blob of the repository).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::Method;
use tokio::sync::{mpsc, watch};

use super::answer::Answer;
use super::remote::RemoteError;
use super::window::Window;
use super::{Inner, PROXY_CLIENT};
use crate::lifecycle::lease::{self, LeaseError};
use crate::oci::{Digest, ImageName};
use crate::repo::{RepoError, Repository};
use crate::storage::metadata::cluster::process_name;
use crate::storage::ByteStream;

/// Bytes appended to the session per append (the last piece is not split).
const SEGMENT: u64 = 8 << 20;
/// How far the remote may be read ahead of the cache's writes (held in memory meanwhile).
const AHEAD: u64 = 32 << 20;
/// Pieces in flight to the cache's writer.
const QUEUE: usize = 64;
/// How often a core waiting for another core's fetch of a blob looks whether it is cached.
const CLAIM_POLL: std::time::Duration = std::time::Duration::from_millis(200);
/// The longest a core waits for another core's fetch (which renews its claim while it runs).
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);
/// Largest piece a reader takes at once.
const READ_CHUNK: u64 = 1 << 20;

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
    /// Bytes received from the remote so far (each one is in the window until written).
    pub received: u64,
    /// Bytes appended to the session so far.
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
    /// What the remote sent that readers may be served from memory.
    window: Window,
}

impl Fetch {
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
                window: Window::default(),
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
    /// Receiving and caching overlap: one side takes the remote's pieces as they come, hands
    /// them to readers (through the fetch's window) and to the other side, which appends them
    /// to the session in segments of [`SEGMENT`] (the hash and the write run on a thread of
    /// their own, one file open and one progress record per segment). The remote is kept at
    /// most [`AHEAD`] ahead of the cache's writes, so memory stays flat in the layer's size.
    async fn copy(
        &self,
        f: &Fetch,
        id: &str,
        tx: &watch::Sender<FetchState>,
        body: ByteStream,
    ) -> Result<(), String> {
        let (pieces, incoming) = mpsc::channel::<Bytes>(QUEUE);
        let (received, written) = tokio::try_join!(
            receive(f, tx, body, pieces),
            self.write_segments(f, id, tx, incoming)
        )?;
        if received != written {
            return Err(format!(
                "caching failed: {written} of {received} received bytes were written"
            ));
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

    /// Appends what `incoming` brings to the session, a segment at a time, until it ends;
    /// returns the session's size.
    async fn write_segments(
        &self,
        f: &Fetch,
        id: &str,
        tx: &watch::Sender<FetchState>,
        incoming: mpsc::Receiver<Bytes>,
    ) -> Result<u64, String> {
        let incoming = Arc::new(tokio::sync::Mutex::new(incoming));
        let mut written = 0u64;
        loop {
            let ended = Arc::new(AtomicBool::new(false));
            let piece = segment(incoming.clone(), ended.clone());
            written = self
                .local
                .upload_append(&f.image, id, Some(written), piece)
                .await
                .map_err(|e| format!("caching failed: {e}"))?;
            f.window.written(written);
            tx.send_modify(|s| s.written = written);
            if ended.load(Ordering::Acquire) {
                return Ok(written);
            }
        }
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
                if let Some(b) = fetch.window.read(offset, n) {
                    return Ok(b);
                }
                // Not held any more, so written. An error means committed (moved into the blob
                // store) or discarded meanwhile: the outcome is published, or about to be; it
                // is handled below.
                let n = n.min(st.written.saturating_sub(offset));
                if n > 0 {
                    if let Ok(b) = self.local.upload_read(id, offset, n).await {
                        return Ok(b);
                    }
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

/// How far readers may read before the fetch ends: what was received, but not the
/// last byte of a blob whose length is known until the commit has verified it (a client that
/// got every byte of a blob the cache then rejects would hold a complete, wrong layer); once
/// the fetch failed, nothing more.
fn visible(st: &FetchState) -> u64 {
    match (&st.done, st.total) {
        (Some(Outcome::Cached), _) | (None, None) => st.received,
        (Some(_), _) => 0,
        (None, Some(total)) => st.received.min(total.saturating_sub(1)),
    }
}

/// Takes the remote's pieces as they come: into the window (for readers) and on to the cache's
/// writer, waiting while the cache is more than [`AHEAD`] behind. Returns the bytes received.
async fn receive(
    f: &Fetch,
    tx: &watch::Sender<FetchState>,
    mut body: ByteStream,
    pieces: mpsc::Sender<Bytes>,
) -> Result<u64, String> {
    let mut progress = tx.subscribe();
    let mut received = 0u64;
    while let Some(piece) = body.next().await {
        let piece =
            piece.map_err(|e| format!("remote transfer broke after {received} bytes: {e}"))?;
        if piece.is_empty() {
            continue;
        }
        while received - progress.borrow_and_update().written > AHEAD {
            if progress.changed().await.is_err() {
                return Err("the fetch was abandoned".into());
            }
        }
        let n = piece.len() as u64;
        f.window.push(received, piece.clone());
        received += n;
        tx.send_modify(|s| s.received = received);
        if pieces.send(piece).await.is_err() {
            return Err("caching stopped taking bytes".into());
        }
    }
    Ok(received)
}

/// One segment of the session: the next pieces from `incoming`, [`SEGMENT`] bytes or more
/// (the last piece is not split), or fewer when `incoming` ends (then `ended` is set).
fn segment(
    incoming: Arc<tokio::sync::Mutex<mpsc::Receiver<Bytes>>>,
    ended: Arc<AtomicBool>,
) -> ByteStream {
    let stream = futures_util::stream::unfold(0u64, move |taken| {
        let incoming = incoming.clone();
        let ended = ended.clone();
        async move {
            if taken >= SEGMENT {
                return None;
            }
            match incoming.lock().await.recv().await {
                Some(piece) => {
                    let n = piece.len() as u64;
                    Some((Ok(piece), taken + n))
                }
                None => {
                    ended.store(true, Ordering::Release);
                    None
                }
            }
        }
    });
    Box::pin(stream)
}
