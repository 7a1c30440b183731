//! The S3 BlobStore (through `object_store`): blobs in a bucket several cores share.
//!
//! # Layout (under the optional `prefix`)
//! ```text
//! blobs/sha256/<hex[..2]>/<hex>        blob content, written only once verified
//! uploads/<id>/session                 empty: the session exists
//! uploads/<id>/<offset, 20 digits>     the bytes one append brought, starting at that offset
//! uploads/<id>/<offset>.claim          empty: who won that offset
//! uploads/<id>/<end>.sha256            the hash of the first part, for a commit elsewhere
//! ```
//! S3 cannot append, so every append is an object of its own, named by the offset it starts
//! at; a session's size is the sum of its parts, read from a listing, so any core can continue
//! an upload another core began. Before writing a part, the writer creates its `.claim` with
//! `If-None-Match: *`: of two appends at one offset (two cores, or a retried request) exactly
//! one wins and the other gets `OffsetMismatch`, as the spec asks. The writer rewrites its
//! claim every 3 s while the append streams in; a claim left 10 s without a part at its offset
//! belongs to a writer that died (a core killed mid-PATCH), and the next append takes the
//! offset over, so the client resumes on another core. A server that ignores the
//! header (Garage) is configured with `conditional_put: false`: no claims are taken, and only
//! the per-process lock serialises appends, within one core.
//!
//! # Commit
//! A session of one part (what `docker push` sends: one PATCH, or a monolithic PUT) is verified
//! and then copied to the blob's key inside the object store (CopyObject, up to 5 GiB): no
//! byte passes through the registry again. Its digest comes from the running SHA-256 this
//! process kept while the part streamed in, or, when another core wrote it, from that core's
//! checkpoint of the hash (`checkpoint.rs`), and only failing both from reading it back. Several parts are streamed in order through SHA-256 into a multipart upload of the
//! blob's key, completed only when the digest matches. Either way a blob is visible only once
//! verified and acknowledged by the object store, and a mismatch leaves nothing behind; a blob
//! already stored is only hashed, not written again.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2_state::Digest as _;

use super::{valid_upload_id, BlobStore};
use crate::oci::Digest;
use crate::storage::{ByteStream, Result, StorageError};

mod checkpoint;
mod claim;
mod commit;
mod redirect;
mod settings;

use checkpoint::Hasher;
pub use settings::S3Settings;

/// Below this an append is one PUT; above, a multipart upload in parts of this size (S3's
/// minimum part is 5 MiB).
const PART: usize = 8 * 1024 * 1024;
/// Parts of one multipart upload in flight at once: an append holds at most
/// `(PARALLEL_PARTS + 1) * PART` bytes (24 MiB), whatever the blob's size.
const PARALLEL_PARTS: usize = 2;
/// The largest object CopyObject copies in one request.
const MAX_COPY: u64 = 5 << 30;

/// The SHA-256 of a session's first `end` bytes, as this process (or, from a checkpoint,
/// another core) wrote them.
struct RunningHash {
    end: u64,
    hasher: Hasher,
    /// The ETag of the part that ends at `end`, when it is the session's first: the commit
    /// trusts the hash only for the very object it was computed over.
    etag: Option<String>,
}

/// What one append wrote.
struct Written {
    size: u64,
    etag: Option<String>,
    /// The body's error, if it broke: what arrived before is kept, so the client can resume.
    broken: Option<io::Error>,
}

type SessionLock = Arc<tokio::sync::Mutex<Option<RunningHash>>>;

pub(super) fn io_err(e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        e if unreachable(&e) => StorageError::Unavailable(e.to_string()),
        e => StorageError::Io(io::Error::other(e)),
    }
}

/// Whether the endpoint could not be reached at all (refused, reset, timed out): somewhere in
/// the error's chain an I/O error of that kind, or a transport failure with no answer.
fn unreachable(e: &object_store::Error) -> bool {
    use io::ErrorKind as K;
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::BrokenPipe
            ) {
                return true;
            }
        }
        cause = c.source();
    }
    false
}

/// One upload part: where it starts, how long it is, and its ETag as listed.
struct Part {
    offset: u64,
    size: u64,
    path: Path,
    etag: Option<String>,
}

/// Blobs and upload parts in one bucket.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    /// `""` or `"some/prefix/"`.
    prefix: String,
    /// Whether appends claim their offset with a conditional create (see the module docs).
    claims: bool,
    /// One lock per session this process is working on: appends, commit and cancel of one
    /// session do not interleave here (across cores the claims do that job).
    /// It also holds the session's running hash, when this process wrote all of it.
    sessions: Mutex<HashMap<String, SessionLock>>,
    /// Presigns blob reads when `redirect` is on.
    signer: Option<Arc<dyn object_store::signer::Signer>>,
}

impl S3BlobStore {
    /// Over any object store (`prefix` is a key prefix, empty for the bucket's root);
    /// `claims`: the store creates objects conditionally (`If-None-Match: *`).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str, claims: bool) -> S3BlobStore {
        let prefix = prefix.trim_matches('/');
        S3BlobStore {
            store,
            claims,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            sessions: Mutex::new(HashMap::new()),
            signer: None,
        }
    }

    pub(super) fn key(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.prefix))
    }

    fn blob_key(&self, d: &Digest) -> Path {
        let hex = d.hex();
        self.key(&format!("blobs/sha256/{}/{hex}", &hex[..2]))
    }

    fn session_dir(&self, id: &str) -> Result<Path> {
        if !valid_upload_id(id) {
            return Err(StorageError::NotFound);
        }
        Ok(self.key(&format!("uploads/{id}")))
    }

    fn lock(&self, id: &str) -> SessionLock {
        let mut m = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_owned()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        let mut m = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        m.remove(id);
    }

    /// The session's parts in offset order; `NotFound` if the session does not exist.
    async fn parts(&self, id: &str) -> Result<Vec<Part>> {
        let dir = self.session_dir(id)?;
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(io_err)?;
        let mut exists = false;
        let mut parts = Vec::new();
        for o in objects {
            match o.location.filename() {
                Some("session") => exists = true,
                Some(name) if name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()) => parts
                    .push(Part {
                        offset: name.parse().unwrap_or(u64::MAX),
                        size: o.size,
                        path: o.location,
                        etag: o.e_tag,
                    }),
                _ => {}
            }
        }
        if !exists {
            return Err(StorageError::NotFound);
        }
        parts.sort_by_key(|p| p.offset);
        let mut at = 0;
        for p in &parts {
            if p.offset != at {
                return Err(StorageError::Corrupt(format!(
                    "upload {id}: a part starts at {} where {at} was expected",
                    p.offset
                )));
            }
            at += p.size;
        }
        Ok(parts)
    }

    /// Writes one part from the body.
    async fn write_part(
        &self,
        path: &Path,
        mut body: ByteStream,
        mut hasher: Option<&mut Hasher>,
    ) -> Result<Written> {
        let mut first = BytesMut::new();
        let mut broken = None;
        while first.len() < PART {
            match body.next().await {
                Some(Ok(c)) => {
                    if let Some(h) = hasher.as_deref_mut() {
                        h.update(&c);
                    }
                    first.extend_from_slice(&c);
                }
                Some(Err(e)) => {
                    broken = Some(e);
                    break;
                }
                None => break,
            }
        }
        if first.len() < PART || broken.is_some() {
            let size = first.len() as u64;
            let mut etag = None;
            if size > 0 {
                let put = self.store.put(path, PutPayload::from(first.freeze()));
                etag = put.await.map_err(io_err)?.e_tag;
            }
            return Ok(Written { size, etag, broken });
        }
        let upload = self.store.put_multipart(path).await.map_err(io_err)?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut n = first.len() as u64;
        w.put(first.freeze());
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    if let Some(h) = hasher.as_deref_mut() {
                        h.update(&c);
                    }
                    n += c.len() as u64;
                    w.wait_for_capacity(PARALLEL_PARTS).await.map_err(io_err)?;
                    w.put(c);
                }
                Err(e) => {
                    broken = Some(e);
                    break;
                }
            }
        }
        let etag = w.finish().await.map_err(io_err)?.e_tag;
        Ok(Written {
            size: n,
            etag,
            broken,
        })
    }

    /// Deletes every object of a session.
    async fn remove_session(&self, id: &str) -> Result<()> {
        let dir = self.session_dir(id)?;
        let objects: Vec<_> = self
            .store
            .list(Some(&dir))
            .map_ok(|o| o.location)
            .try_collect()
            .await
            .map_err(io_err)?;
        for path in objects {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.store.head(&self.blob_key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let key = self.blob_key(digest);
        if len == 0 {
            self.store.head(&key).await.map_err(io_err)?;
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start.saturating_add(len))),
            ..GetOptions::default()
        };
        let result = self.store.get_opts(&key, options).await.map_err(io_err)?;
        Ok(Box::pin(result.into_stream().map_err(io::Error::other)))
    }

    async fn redirect_url(&self, digest: &Digest) -> Result<Option<String>> {
        self.presigned(digest).await
    }

    async fn bytes(&self, digest: &Digest) -> Result<Bytes> {
        let got = self
            .store
            .get(&self.blob_key(digest))
            .await
            .map_err(io_err)?;
        got.bytes().await.map_err(io_err)
    }

    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        let d = Digest::sha256_of(&bytes);
        if self.stat(&d).await?.is_none() {
            self.store
                .put(&self.blob_key(&d), PutPayload::from(bytes))
                .await
                .map_err(io_err)?;
        }
        Ok(d)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        if self.stat(digest).await?.is_none() {
            return Ok(false);
        }
        match self.store.delete(&self.blob_key(digest)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_err(e)),
        }
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let prefix = self.key("blobs/sha256");
        let mut stream = match after {
            Some(d) => self
                .store
                .list_with_offset(Some(&prefix), &self.blob_key(d)),
            None => self.store.list(Some(&prefix)),
        };
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(meta) = stream.next().await else {
                break;
            };
            let meta = meta.map_err(io_err)?;
            let parsed = meta
                .location
                .filename()
                .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
            if let Some(d) = parsed {
                out.push(d);
            }
        }
        Ok(out)
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        let path = self.session_dir(id)?.join("session");
        self.store
            .put(&path, PutPayload::default())
            .await
            .map_err(io_err)?;
        Ok(())
    }

    async fn upload_size(&self, id: &str) -> Result<u64> {
        Ok(self.parts(id).await?.iter().map(|p| p.size).sum())
    }

    async fn upload_append(&self, id: &str, offset: Option<u64>, body: ByteStream) -> Result<u64> {
        let lock = self.lock(id);
        let mut state = lock.lock().await;
        let current = self.upload_size(id).await?;
        if let Some(requested) = offset.filter(|o| *o != current) {
            return Err(StorageError::OffsetMismatch { current, requested });
        }
        let dir = self.session_dir(id)?;
        let name = format!("{current:020}");
        let claim = self.claim(id, &dir, &name, current).await?;
        let mut hasher = match state.take() {
            Some(h) if h.end == current => Some(h.hasher),
            _ if current == 0 => Some(Hasher::new()),
            _ => None,
        };
        let outcome = self
            .write_claimed(
                claim.as_ref(),
                &dir.clone().join(name),
                body,
                hasher.as_mut(),
            )
            .await;
        if let (Ok(w), Some(hasher)) = (&outcome, hasher) {
            let running = RunningHash {
                end: current + w.size,
                hasher,
                etag: w.etag.clone().filter(|_| current == 0),
            };
            if current == 0 && w.size > 0 {
                // The usual push's only part: any core can then commit it without reading.
                self.save_checkpoint(&dir, &running).await;
            }
            *state = Some(running);
        }
        if let Some(claim) = claim.filter(|_| !matches!(&outcome, Ok(w) if w.size > 0)) {
            // Nothing was written at this offset: free it for the next append.
            let _ = self.store.delete(&claim).await;
        }
        let w = outcome?;
        match w.broken {
            Some(e) => Err(StorageError::Body(e)),
            None => Ok(current + w.size),
        }
    }

    async fn upload_read(&self, id: &str, offset: u64, len: u64) -> Result<Bytes> {
        let parts = self.parts(id).await?;
        let end = offset.saturating_add(len);
        if end > parts.iter().map(|p| p.size).sum() {
            return Err(StorageError::NotFound);
        }
        let mut out = BytesMut::with_capacity(usize::try_from(len).unwrap_or(0));
        for p in parts
            .iter()
            .filter(|p| p.offset < end && p.offset + p.size > offset)
        {
            let from = offset.max(p.offset) - p.offset;
            let to = end.min(p.offset + p.size) - p.offset;
            let got = self
                .store
                .get_range(&p.path, from..to)
                .await
                .map_err(io_err)?;
            out.extend_from_slice(&got);
        }
        Ok(out.freeze())
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        if !expected.is_storable() {
            return Err(StorageError::UnsupportedDigest(expected.clone()));
        }
        let lock = self.lock(id);
        let mut held = lock.lock().await;
        let running = held.take();
        let result = self.commit_locked(id, expected, running).await;
        drop(held);
        self.forget(id);
        result
    }

    async fn upload_cancel(&self, id: &str) -> Result<()> {
        if !valid_upload_id(id) {
            return Ok(());
        }
        let lock = self.lock(id);
        let held = lock.lock().await;
        let result = self.remove_session(id).await;
        drop(held);
        self.forget(id);
        result
    }

    async fn uploads(&self) -> Result<Vec<String>> {
        let prefix = self.key("uploads");
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(io_err)?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .filter(|id| valid_upload_id(id))
            .collect())
    }
}
