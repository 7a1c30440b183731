//! The filesystem backend.
//!
//! # Layout
//! ```text
//! <root>/
//!   blobs/sha256/<hex[..2]>/<hex>                 blob content, immutable once renamed here
//!   uploads/<id>/data                             bytes received so far
//!   uploads/<id>/namespace                        "repo/image" that owns the session
//!   uploads/<id>/client                           who opened it (user name or address)
//!   tmp/                                          scratch files for atomic writes
//!   repositories/<repo>/<image...>/
//!     _layers/sha256/<hex>                        blob link (empty file)
//!     _manifests/revisions/sha256/<hex>           manifest link; holds the media type
//!     _manifests/tags/<tag>                       holds the manifest digest
//!     _referrers/sha256/<subject hex>/<hex>       descriptor JSON of a referrer
//! ```
//! Every path component comes from a grammar-checked type (`Digest`, `ImageName`, `Tag`, an
//! upload id we generated), so no request can name a path outside the root. Image components
//! cannot start with `_`, so the `_layers`-style directories never collide with image names.
//!
//! # Durability
//! Metadata files are written to `tmp/`, fsynced, renamed into place and their directory fsynced.
//! An upload's data is fsynced before it is renamed into `blobs/`, and only after its digest was
//! verified. Upload sessions are plain directories, so they survive a crash; the running SHA-256
//! state is kept in memory as an optimisation and recomputed from the data after a restart.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::{ByteStream, Namespace, Result, Storage, StorageError, UploadInfo};
use crate::oci::{Descriptor, Digest, ImageName, RepoName, Tag};

/// Size of the pieces a blob is read in; large enough to keep syscalls per MiB low.
const READ_CHUNK: usize = 512 * 1024;
/// Body chunks buffered between the network task and the writer thread (backpressure bound).
const WRITE_QUEUE: usize = 16;

/// Running hash of one upload: valid for the first `offset` bytes of its data file.
struct HashState {
    offset: u64,
    hasher: Sha256,
}

/// Storage rooted at a directory.
pub struct FsStorage {
    root: PathBuf,
    /// One lock per live upload session: serialises appends and commit of the same session and
    /// holds its running hash. Entries go away on commit or cancel.
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

/// Upload ids are ours (32 hex chars); anything else cannot name a session.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl FsStorage {
    /// Opens (creating if needed) storage under `root`.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<FsStorage> {
        let root = root.into();
        for dir in ["blobs/sha256", "uploads", "tmp", "repositories"] {
            fs::create_dir_all(root.join(dir))?;
        }
        // Scratch files left by a crash are never referenced; clear them.
        for entry in fs::read_dir(root.join("tmp"))? {
            let _ = fs::remove_file(entry?.path());
        }
        Ok(FsStorage {
            root,
            uploads: Mutex::new(HashMap::new()),
        })
    }

    fn blob_path(&self, d: &Digest) -> PathBuf {
        let hex = d.hex();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn ns_dir(&self, ns: &Namespace) -> PathBuf {
        self.root.join("repositories").join(ns.path())
    }

    fn layer_link(&self, ns: &Namespace, d: &Digest) -> PathBuf {
        self.ns_dir(ns).join("_layers/sha256").join(d.hex())
    }

    fn revision_link(&self, ns: &Namespace, d: &Digest) -> PathBuf {
        self.ns_dir(ns)
            .join("_manifests/revisions/sha256")
            .join(d.hex())
    }

    fn tag_path(&self, ns: &Namespace, tag: &Tag) -> PathBuf {
        self.ns_dir(ns).join("_manifests/tags").join(tag.as_str())
    }

    fn referrers_dir(&self, ns: &Namespace, subject: &Digest) -> PathBuf {
        self.ns_dir(ns)
            .join("_referrers/sha256")
            .join(subject.hex())
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    fn upload_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<HashState>>> {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_owned()).or_default().clone()
    }

    fn forget_upload(&self, id: &str) {
        let mut map = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(id);
    }

    /// Checks that the session exists and belongs to `ns`; returns its data path.
    async fn upload_data(&self, ns: &Namespace, id: &str) -> Result<PathBuf> {
        if !valid_upload_id(id) {
            return Err(StorageError::NotFound);
        }
        let dir = self.upload_dir(id);
        let owner = blocking({
            let p = dir.join("namespace");
            move || absent_ok(fs::read_to_string(p))
        })
        .await?;
        match owner {
            Some(o) if o == ns.path() => Ok(dir.join("data")),
            _ => Err(StorageError::NotFound),
        }
    }
}

/// Writes `contents` to `dest` atomically and durably through `tmp`.
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

fn remove_if_present(p: &Path) -> io::Result<bool> {
    Ok(absent_ok(fs::remove_file(p))?.is_some())
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

/// Recursively finds image directories (those holding `_manifests`) under `dir`.
fn walk_images(dir: &Path, prefix: &str, out: &mut Vec<String>) -> io::Result<()> {
    let Some(entries) = absent_ok(fs::read_dir(dir))? else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !entry.file_type()?.is_dir() {
            continue;
        }
        if name == "_manifests" {
            if !prefix.is_empty() {
                out.push(prefix.to_owned());
            }
            continue;
        }
        if name.starts_with('_') {
            continue;
        }
        let child = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        walk_images(&entry.path(), &child, out)?;
    }
    Ok(())
}

#[async_trait]
impl Storage for FsStorage {
    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        if !digest.is_storable() {
            return Ok(None);
        }
        let p = self.blob_path(digest);
        blocking(move || Ok(absent_ok(fs::metadata(p))?.map(|m| m.len()))).await
    }

    async fn blob_read(&self, digest: &Digest, start: u64, len: u64) -> Result<ByteStream> {
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
                let mut buf = vec![0u8; want];
                let r = file.read_exact(&mut buf).map(|_| Bytes::from(buf));
                let failed = r.is_err();
                if tx.blocking_send(r).is_err() || failed {
                    return;
                }
                left -= want as u64;
            }
        });
        Ok(Box::pin(tokio_stream_from(rx)))
    }

    async fn blob_bytes(&self, digest: &Digest) -> Result<Bytes> {
        let p = self.blob_path(digest);
        let bytes = blocking(move || absent_ok(fs::read(p))).await?;
        bytes.map(Bytes::from).ok_or(StorageError::NotFound)
    }

    async fn blob_put(&self, bytes: Bytes) -> Result<Digest> {
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

    async fn link_blob(&self, ns: &Namespace, digest: &Digest) -> Result<()> {
        let (tmp, link) = (self.root.join("tmp"), self.layer_link(ns, digest));
        blocking(move || write_atomic(&tmp, &link, b"")).await
    }

    async fn blob_linked(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        let link = self.layer_link(ns, digest);
        blocking(move || Ok(link.exists())).await
    }

    async fn unlink_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        let link = self.layer_link(ns, digest);
        blocking(move || remove_if_present(&link)).await
    }

    async fn upload_create(&self, ns: &Namespace, client: &str) -> Result<String> {
        let id = random_id();
        let dir = self.upload_dir(&id);
        let owner = ns.path();
        let client = client.to_owned();
        blocking(move || {
            fs::create_dir(&dir)?;
            File::create(dir.join("data"))?;
            fs::write(dir.join("client"), client)?;
            fs::write(dir.join("namespace"), owner)?;
            Ok(())
        })
        .await?;
        Ok(id)
    }

    async fn upload_size(&self, ns: &Namespace, id: &str) -> Result<u64> {
        let data = self.upload_data(ns, id).await?;
        let len = blocking(move || absent_ok(fs::metadata(data))).await?;
        len.map(|m| m.len()).ok_or(StorageError::NotFound)
    }

    async fn upload_append(
        &self,
        ns: &Namespace,
        id: &str,
        offset: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64> {
        let data = self.upload_data(ns, id).await?;
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
        let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        // The writer thread hashes and writes while this task reads the network: two cores.
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = file;
            let mut hasher = hasher;
            let mut written = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                if let Err(e) = file.write_all(&chunk) {
                    // A partial write leaves the running hash unknown; recompute at commit.
                    return (written, None, Some(e));
                }
                if let Some(h) = hasher.as_mut() {
                    h.update(&chunk);
                }
                written += chunk.len() as u64;
            }
            (written, hasher, None)
        });
        let mut body_error = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) if bytes.is_empty() => {}
                Ok(bytes) => {
                    if tx.send(bytes).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
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

    async fn upload_commit(&self, ns: &Namespace, id: &str, expected: &Digest) -> Result<u64> {
        if !expected.is_storable() {
            return Err(StorageError::UnsupportedDigest(expected.clone()));
        }
        let data = self.upload_data(ns, id).await?;
        let lock = self.upload_lock(id);
        let mut state = lock.lock().await;
        let dir = self.upload_dir(id);
        let dest = self.blob_path(expected);
        let cached = state.take();
        let want = expected.clone();
        let outcome = blocking(move || {
            let size = fs::metadata(&data)?.len();
            let hasher = match cached {
                Some(h) if h.offset == size => h.hasher,
                _ => hash_file(&data)?.1,
            };
            let actual = Digest::from_sha256(hasher.finalize().into());
            if actual != want {
                fs::remove_dir_all(&dir)?;
                return Ok(Err(actual));
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
            Ok(Ok(size))
        })
        .await;
        self.forget_upload(id);
        match outcome? {
            Ok(size) => {
                self.link_blob(ns, expected).await?;
                Ok(size)
            }
            Err(actual) => Err(StorageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            }),
        }
    }

    async fn upload_cancel(&self, ns: &Namespace, id: &str) -> Result<()> {
        let _ = self.upload_data(ns, id).await?;
        let lock = self.upload_lock(id);
        let _guard = lock.lock().await;
        let dir = self.upload_dir(id);
        blocking(move || absent_ok(fs::remove_dir_all(dir)).map(|_| ())).await?;
        self.forget_upload(id);
        Ok(())
    }

    async fn uploads(&self) -> Result<Vec<UploadInfo>> {
        let dir = self.root.join("uploads");
        blocking(move || {
            let mut out = Vec::new();
            let now = std::time::SystemTime::now();
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let id = entry.file_name().to_string_lossy().into_owned();
                if !valid_upload_id(&id) {
                    continue;
                }
                let Some(owner) = absent_ok(fs::read_to_string(entry.path().join("namespace")))?
                else {
                    continue;
                };
                let Some(namespace) = Namespace::parse(&owner) else {
                    continue;
                };
                let touched = absent_ok(fs::metadata(entry.path().join("data")))?
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(now);
                let idle = now.duration_since(touched).unwrap_or_default();
                // Sessions written before clients were recorded belong to nobody in particular.
                let client =
                    absent_ok(fs::read_to_string(entry.path().join("client")))?.unwrap_or_default();
                out.push(UploadInfo {
                    id,
                    namespace,
                    client,
                    idle,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn upload_read(&self, ns: &Namespace, id: &str, offset: u64, len: u64) -> Result<Bytes> {
        let data = self.upload_data(ns, id).await?;
        let bytes = blocking(move || {
            let Some(mut f) = absent_ok(File::open(data))? else {
                return Ok(None);
            };
            f.seek(SeekFrom::Start(offset))?;
            let mut buf = vec![0u8; len as usize];
            f.read_exact(&mut buf)?;
            Ok(Some(Bytes::from(buf)))
        })
        .await?;
        bytes.ok_or(StorageError::NotFound)
    }

    async fn manifest_link(&self, ns: &Namespace, digest: &Digest, media_type: &str) -> Result<()> {
        let (tmp, link) = (self.root.join("tmp"), self.revision_link(ns, digest));
        let mt = media_type.to_owned();
        blocking(move || write_atomic(&tmp, &link, mt.as_bytes())).await
    }

    async fn manifest_media_type(&self, ns: &Namespace, digest: &Digest) -> Result<Option<String>> {
        let link = self.revision_link(ns, digest);
        blocking(move || absent_ok(fs::read_to_string(link))).await
    }

    async fn manifest_unlink(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        let link = self.revision_link(ns, digest);
        blocking(move || remove_if_present(&link)).await
    }

    async fn tag_get(&self, ns: &Namespace, tag: &Tag) -> Result<Option<Digest>> {
        let p = self.tag_path(ns, tag);
        let Some(s) = blocking(move || absent_ok(fs::read_to_string(p))).await? else {
            return Ok(None);
        };
        s.trim()
            .parse()
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("tag {tag} in {}: {e}", ns.path())))
    }

    async fn tag_set(&self, ns: &Namespace, tag: &Tag, digest: &Digest) -> Result<()> {
        let (tmp, p) = (self.root.join("tmp"), self.tag_path(ns, tag));
        let s = digest.to_string();
        blocking(move || write_atomic(&tmp, &p, s.as_bytes())).await
    }

    async fn tag_delete(&self, ns: &Namespace, tag: &Tag) -> Result<bool> {
        let p = self.tag_path(ns, tag);
        blocking(move || remove_if_present(&p)).await
    }

    async fn tags(&self, ns: &Namespace) -> Result<Option<Vec<String>>> {
        let dir = self.ns_dir(ns);
        blocking(move || {
            if !dir.is_dir() {
                return Ok(None);
            }
            let mut tags = Vec::new();
            if let Some(entries) = absent_ok(fs::read_dir(dir.join("_manifests/tags")))? {
                for e in entries {
                    tags.push(e?.file_name().to_string_lossy().into_owned());
                }
            }
            tags.sort();
            Ok(Some(tags))
        })
        .await
    }

    async fn referrer_add(
        &self,
        ns: &Namespace,
        subject: &Digest,
        descriptor: &Descriptor,
    ) -> Result<()> {
        let referrer: Digest = descriptor
            .digest
            .parse()
            .map_err(|e| StorageError::Corrupt(format!("referrer digest: {e}")))?;
        let p = self.referrers_dir(ns, subject).join(referrer.hex());
        let json = serde_json::to_vec(descriptor).map_err(|e| StorageError::Io(e.into()))?;
        let tmp = self.root.join("tmp");
        blocking(move || write_atomic(&tmp, &p, &json)).await
    }

    async fn referrer_remove(
        &self,
        ns: &Namespace,
        subject: &Digest,
        referrer: &Digest,
    ) -> Result<()> {
        let p = self.referrers_dir(ns, subject).join(referrer.hex());
        blocking(move || remove_if_present(&p).map(|_| ())).await
    }

    async fn referrers(&self, ns: &Namespace, subject: &Digest) -> Result<Vec<Descriptor>> {
        let dir = self.referrers_dir(ns, subject);
        let raw = blocking(move || {
            let mut out = Vec::new();
            if let Some(entries) = absent_ok(fs::read_dir(&dir))? {
                for e in entries {
                    let e = e?;
                    out.push((e.file_name(), fs::read(e.path())?));
                }
            }
            out.sort();
            Ok(out)
        })
        .await?;
        raw.into_iter()
            .map(|(_, json)| {
                serde_json::from_slice(&json)
                    .map_err(|e| StorageError::Corrupt(format!("referrer descriptor: {e}")))
            })
            .collect()
    }

    async fn images(&self, repo: &RepoName) -> Result<Vec<ImageName>> {
        let dir = self.root.join("repositories").join(repo.as_str());
        let mut names = blocking(move || {
            let mut out = Vec::new();
            walk_images(&dir, "", &mut out)?;
            Ok(out)
        })
        .await?;
        names.sort();
        Ok(names.into_iter().filter_map(|n| n.parse().ok()).collect())
    }
}

/// Adapts a channel receiver into a stream.
fn tokio_stream_from(
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}
