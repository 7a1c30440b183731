//! The filesystem BlobStore.
//!
//! # Layout
//! ```text
//! <root>/
//!   blobs/sha256/<hex[..2]>/<hex>    blob content, immutable once renamed here
//!   uploads/<id>/data                bytes received so far
//!   tmp/                             scratch files for atomic writes
//! ```
//! Every path component comes from a grammar-checked digest or an upload id we generated, so no
//! request can name a path outside the root. (Releases before the metadata database also kept
//! `repositories/` and `uploads/<id>/namespace` here; `storage::import` reads those once.)
//!
//! # Durability
//! Small blobs are written to `tmp/`, fsynced, renamed into place and their directory fsynced.
//! An upload's data is fsynced before it is renamed into `blobs/`, and only after its digest was
//! verified. The running SHA-256 of a session is kept in memory as an optimisation; a session
//! continued by another process (or after a restart) is rehashed from its data at commit.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::{valid_upload_id, BlobStore};
use crate::oci::Digest;
use crate::storage::{ByteStream, Result, StorageError};
use write::{pump, write_chunks, WRITE_QUEUE};

mod write;

/// Size of the pieces a blob is read in; large enough to keep syscalls per MiB low.
const READ_CHUNK: usize = 512 * 1024;

/// Running hash of one upload: valid for the first `offset` bytes of its data file.
struct HashState {
    offset: u64,
    hasher: Sha256,
}

/// Blobs and upload data under a directory.
pub struct FsBlobStore {
    root: PathBuf,
    /// One lock per live upload session: serialises appends and commit of the same session and
    /// holds its running hash. Entries go away on commit or cancel (bounded by open sessions).
    uploads: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<HashState>>>>>,
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(StorageError::Io),
        Err(e) => Err(StorageError::Io(io::Error::other(e))),
    }
}

/// `Ok(None)` for a missing file, the error otherwise.
fn absent_ok<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn random_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Writes `contents` to `dest` atomically and durably through `tmp`.
/// Scratch files older than this are a crash's leftovers.
const STALE_SCRATCH: std::time::Duration = std::time::Duration::from_secs(3600);

fn write_atomic(tmp_dir: &Path, dest: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = tmp_dir.join(random_id());
    let mut f = File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    let parent = dest
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent"))?;
    fs::create_dir_all(parent)?;
    if let Err(e) = fs::rename(&tmp, dest) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(parent)
}

/// Hashes a whole file (after a restart lost the running hash).
fn hash_file(path: &Path) -> io::Result<(u64, Sha256)> {
    let mut f = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok((total, hasher));
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

impl FsBlobStore {
    /// Opens (creating if needed) the store under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsBlobStore> {
        let root = root.into();
        for dir in ["blobs/sha256", "uploads", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        // Scratch files left by a crash are never referenced; clear them. Only old ones: another
        // process on the same root (`berth-core gc` beside a server, or a second core) may be
        // writing the young ones right now.
        for entry in fs::read_dir(root.join("tmp"))? {
            let entry = entry?;
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > STALE_SCRATCH);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(FsBlobStore {
            root,
            uploads: Mutex::new(HashMap::new()),
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    /// The data file of a session; `NotFound` for an id that cannot be ours.
    fn upload_data(&self, id: &str) -> Result<PathBuf> {
        if !valid_upload_id(id) {
            return Err(StorageError::NotFound);
        }
        Ok(self.upload_dir(id).join("data"))
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<HashState>>> {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget_upload(&self, id: &str) {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn stat(&self, digest: &Digest) -> Result<Option<u64>> {
        if !digest.is_storable() {
            return Ok(None);
        }
        let p = self.blob_path(digest);
        blocking(move || Ok(absent_ok(fs::metadata(p))?.map(|m| m.len()))).await
    }

    async fn read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
        let p = self.blob_path(digest);
        let file = blocking(move || absent_ok(File::open(p))).await?;
        let mut file = file.ok_or(StorageError::NotFound)?;
        // A dedicated blocking reader feeds a bounded channel: one thread hop per chunk instead
        // of one per read call, and backpressure from a slow client stops the reads.
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(4);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = file.seek(SeekFrom::Start(start)) {
                let _ = tx.blocking_send(Err(e));
                return;
            }
            let mut left = len;
            while left > 0 {
                let want = left.min(READ_CHUNK as u64) as usize;
                let r = read_chunk(&mut file, want);
                let failed = r.is_err();
                if tx.blocking_send(r).is_err() || failed {
                    return;
                }
                left -= want as u64;
            }
        });
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn bytes(&self, digest: &Digest) -> Result<Bytes> {
        let p = self.blob_path(digest);
        let bytes = blocking(move || absent_ok(fs::read(p))).await?;
        bytes.map(Bytes::from).ok_or(StorageError::NotFound)
    }

    async fn put(&self, bytes: Bytes) -> Result<Digest> {
        let digest = Digest::sha256_of(&bytes);
        let dest = self.blob_path(&digest);
        let tmp = self.root.join("tmp");
        blocking(move || {
            if dest.exists() {
                return Ok(());
            }
            write_atomic(&tmp, &dest, &bytes)
        })
        .await?;
        Ok(digest)
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        if !digest.is_storable() {
            return Ok(false);
        }
        let p = self.blob_path(digest);
        blocking(move || Ok(absent_ok(fs::remove_file(p))?.is_some())).await
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let after = after.map(|d| d.hex().to_owned()).unwrap_or_default();
        blocking(move || {
            let mut prefixes: Vec<String> = fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|p| p.len() == 2 && after.get(..2).is_none_or(|a| p.as_str() >= a))
                .collect();
            prefixes.sort();
            let mut out = Vec::new();
            for p in prefixes {
                let mut names: Vec<String> = fs::read_dir(dir.join(&p))?
                    .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                    .filter(|n| n.as_str() > after.as_str())
                    .collect();
                names.sort();
                for n in names {
                    if let Ok(d) = format!("sha256:{n}").parse() {
                        out.push(d);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn upload_create(&self, id: &str) -> Result<()> {
        let data = self.upload_data(id)?;
        blocking(move || {
            if let Some(dir) = data.parent() {
                fs::create_dir(dir)?;
            }
            File::create(data)?;
            Ok(())
        })
        .await
    }

    async fn upload_size(&self, id: &str) -> Result<u64> {
        let data = self.upload_data(id)?;
        let len = blocking(move || absent_ok(fs::metadata(data))).await?;
        len.map(|m| m.len()).ok_or(StorageError::NotFound)
    }

    async fn upload_append(
        &self,
        id: &str,
        offset: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64> {
        let data = self.upload_data(id)?;
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let file = blocking({
            let data = data.clone();
            move || absent_ok(OpenOptions::new().append(true).open(data))
        })
        .await?;
        let file = file.ok_or(StorageError::NotFound)?;
        let current = blocking({
            let f = file.try_clone().map_err(StorageError::Io)?;
            move || Ok(f.metadata()?.len())
        })
        .await?;
        if let Some(requested) = offset {
            if requested != current {
                return Err(StorageError::OffsetMismatch { current, requested });
            }
        }
        // Keep the running hash only if it covers exactly the bytes on disk.
        let hasher = match state.take() {
            Some(h) if h.offset == current => Some(h.hasher),
            _ if current == 0 => Some(Sha256::new()),
            _ => None,
        };
        let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        // The writer thread hashes and writes while this task reads the network: two cores.
        let writer = tokio::task::spawn_blocking(move || write_chunks(file, hasher, rx));
        let body_error = pump(&mut body, tx).await;
        let (written, hasher, write_error) = writer
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))?;
        *state = hasher.map(|hasher| HashState {
            offset: current + written,
            hasher,
        });
        if let Some(e) = write_error {
            return Err(StorageError::Io(e));
        }
        if let Some(e) = body_error {
            return Err(StorageError::Body(e));
        }
        Ok(current + written)
    }

    async fn upload_read(&self, id: &str, offset: u64, len: u64) -> Result<Bytes> {
        let data = self.upload_data(id)?;
        let bytes = blocking(move || {
            let Some(mut f) = absent_ok(File::open(data))? else {
                return Ok(None);
            };
            f.seek(SeekFrom::Start(offset))?;
            Ok(Some(read_chunk(&mut f, len as usize)?))
        })
        .await?;
        bytes.ok_or(StorageError::NotFound)
    }

    async fn upload_commit(&self, id: &str, expected: &Digest) -> Result<u64> {
        if !expected.is_storable() {
            return Err(StorageError::UnsupportedDigest(expected.clone()));
        }
        let data = self.upload_data(id)?;
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let dir = self.upload_dir(id);
        let dest = self.blob_path(expected);
        let cached = state.take();
        let want = expected.clone();
        let outcome = blocking(move || {
            let Some(meta) = absent_ok(fs::metadata(&data))? else {
                return Ok(None);
            };
            let size = meta.len();
            let hasher = match cached {
                Some(h) if h.offset == size => h.hasher,
                _ => hash_file(&data)?.1,
            };
            let actual = Digest::from_sha256(hasher.finalize().into());
            if actual != want {
                fs::remove_dir_all(&dir)?;
                return Ok(Some(Err(actual)));
            }
            if dest.exists() {
                // Already stored (pushed before, or by another repository): keep the old copy.
                fs::remove_dir_all(&dir)?;
            } else {
                File::open(&data)?.sync_all()?;
                let parent = dest.parent().ok_or_else(|| io::Error::other("no parent"))?;
                fs::create_dir_all(parent)?;
                fs::rename(&data, &dest)?;
                sync_dir(parent)?;
                fs::remove_dir_all(&dir)?;
            }
            Ok(Some(Ok(size)))
        })
        .await;
        self.forget_upload(id);
        match outcome? {
            None => Err(StorageError::NotFound),
            Some(Ok(size)) => Ok(size),
            Some(Err(actual)) => Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            }),
        }
    }

    async fn upload_cancel(&self, id: &str) -> Result<()> {
        self.upload_data(id)?;
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let dir = self.upload_dir(id);
        blocking(move || absent_ok(fs::remove_dir_all(dir)).map(|_| ())).await?;
        self.forget_upload(id);
        Ok(())
    }

    async fn uploads(&self) -> Result<Vec<String>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut out: Vec<String> = fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|id| valid_upload_id(id))
                .collect();
            out.sort();
            Ok(out)
        })
        .await
    }
}

/// Reads exactly `want` bytes into a fresh buffer, without zeroing it first (`read_to_end`
/// fills spare capacity: a memset of every chunk cost a tenth of a pull's CPU).
fn read_chunk(file: &mut File, want: usize) -> io::Result<Bytes> {
    let mut buf = Vec::with_capacity(want);
    file.take(want as u64).read_to_end(&mut buf)?;
    if buf.len() < want {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shorter than expected",
        ));
    }
    Ok(Bytes::from(buf))
}

/// Adapts a channel receiver into a stream.
fn tokio_stream_from(
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}
