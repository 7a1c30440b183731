//! The one-time import of the filesystem metadata that releases before the metadata database
//! wrote beside the blobs, so an upgrade loses nothing.
//!
//! The old layout under the storage root:
//! ```text
//! repositories/<repo>/<image...>/
//!   _layers/sha256/<hex>                  blob link (empty file)
//!   _manifests/revisions/sha256/<hex>     manifest link; holds the media type
//!   _manifests/tags/<tag>                 holds the manifest digest
//!   _referrers/...                        derived from the manifests; not read
//! uploads/<id>/namespace, uploads/<id>/client   an open session's owner
//! ```
//! Blobs (`blobs/`) and session data (`uploads/<id>/data`) are where the BlobStore keeps them
//! already. After a complete import `repositories/` is renamed `repositories.imported`, which
//! is what makes the import run once; it is kept for a downgrade and may be removed by hand.
//! An import interrupted half-way is simply run again: every write is an upsert.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::metadata::{Actor, ManifestRecord, Put, UploadRecord};
use super::{Namespace, Stores};
use crate::oci::{Digest, ImageName, ManifestInfo, RepoName, Tag};

/// What an import did, for the log and the `migrate` command.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Imported {
    pub images: usize,
    pub blob_links: usize,
    pub manifests: usize,
    pub tags: usize,
    pub uploads: usize,
}

/// Imports if `root` holds filesystem metadata not yet imported.
pub async fn if_needed(root: &Path, stores: &Stores) -> Result<Option<Imported>, String> {
    if !root.join("repositories").is_dir() {
        return Ok(None);
    }
    let done = run(root, stores).await?;
    tracing::info!(?done, root = %root.display(), "imported the filesystem metadata of an older release");
    Ok(Some(done))
}

/// Imports everything found under `root`, then retires the old metadata.
pub async fn run(root: &Path, stores: &Stores) -> Result<Imported, String> {
    let repos = root.join("repositories");
    let mut done = Imported::default();
    for (ns, dir) in images(&repos).map_err(|e| format!("{}: {e}", repos.display()))? {
        import_image(&ns, &dir, stores, &mut done).await?;
        done.images += 1;
    }
    done.uploads = import_uploads(&root.join("uploads"), stores).await?;
    let retired = root.join("repositories.imported");
    fs::rename(&repos, &retired).map_err(|e| format!("renaming {}: {e}", repos.display()))?;
    Ok(done)
}

/// Every image directory (one holding `_layers` or `_manifests`) under `repositories/`.
fn images(repos: &Path) -> std::io::Result<Vec<(Namespace, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(repos)? {
        let entry = entry?;
        let Ok(repo) = entry.file_name().to_string_lossy().parse::<RepoName>() else {
            continue;
        };
        walk(&entry.path(), &repo, "", &mut out)?;
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn walk(
    dir: &Path,
    repo: &RepoName,
    prefix: &str,
    out: &mut Vec<(Namespace, PathBuf)>,
) -> std::io::Result<()> {
    let is_image = dir.join("_manifests").is_dir() || dir.join("_layers").is_dir();
    if is_image {
        if let Ok(image) = prefix.parse::<ImageName>() {
            out.push((Namespace::new(repo.clone(), image), dir.to_owned()));
        }
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('_') || !entry.file_type()?.is_dir() {
            continue;
        }
        let child = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        walk(&entry.path(), repo, &child, out)?;
    }
    Ok(())
}

/// `(name, contents)` of the files in `dir`; none if it does not exist.
fn files(dir: &Path) -> Result<Vec<(String, String)>, String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let text = fs::read_to_string(entry.path())
            .map_err(|e| format!("{}: {e}", entry.path().display()))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), text));
    }
    out.sort();
    Ok(out)
}

fn sha256(hex: &str) -> Option<Digest> {
    format!("sha256:{hex}").parse().ok()
}

/// How an imported manifest is stored: as the old release had it, references unchecked.
fn put(tag: Option<&Tag>) -> Put<'_> {
    Put {
        tag,
        actor: Actor::new("berth", "import"),
        check_references: false,
    }
}

async fn import_image(
    ns: &Namespace,
    dir: &Path,
    stores: &Stores,
    done: &mut Imported,
) -> Result<(), String> {
    let meta_err = |e: super::metadata::MetadataError| format!("{}: {e}", ns.path());
    for (hex, _) in files(&dir.join("_layers/sha256"))? {
        let Some(d) = sha256(&hex) else { continue };
        let Some(size) = stores.blobs.stat(&d).await.map_err(|e| e.to_string())? else {
            tracing::warn!(namespace = %ns.path(), digest = %d, "blob bytes missing; link not imported");
            continue;
        };
        stores.meta.blob_intent(&d).await.map_err(meta_err)?;
        stores
            .meta
            .blob_placed(Some(ns), &d, size)
            .await
            .map_err(meta_err)?;
        done.blob_links += 1;
    }
    let mut records: HashMap<Digest, ManifestRecord> = HashMap::new();
    for (hex, media_type) in files(&dir.join("_manifests/revisions/sha256"))? {
        let Some(digest) = sha256(&hex) else { continue };
        let Ok(bytes) = stores.blobs.bytes(&digest).await else {
            tracing::warn!(namespace = %ns.path(), %digest, "manifest bytes missing; not imported");
            continue;
        };
        let info = ManifestInfo::parse(&bytes, Some(media_type.trim()))
            .map_err(|e| format!("{} manifest {digest}: {e}", ns.path()))?;
        let record = ManifestRecord::from_info(digest.clone(), bytes.len() as u64, &info);
        stores.meta.blob_intent(&digest).await.map_err(meta_err)?;
        stores
            .meta
            .put_manifest(ns, &record, &put(None))
            .await
            .map_err(meta_err)?;
        records.insert(digest, record);
        done.manifests += 1;
    }
    for (tag, digest) in files(&dir.join("_manifests/tags"))? {
        let (Ok(tag), Ok(digest)) = (tag.parse::<Tag>(), digest.trim().parse::<Digest>()) else {
            continue;
        };
        if let Some(record) = records.get(&digest) {
            stores
                .meta
                .put_manifest(ns, record, &put(Some(&tag)))
                .await
                .map_err(meta_err)?;
            done.tags += 1;
        }
    }
    Ok(())
}

/// Sessions of the old layout get their record; their data stays where it is.
async fn import_uploads(dir: &Path, stores: &Stores) -> Result<usize, String> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut n = 0;
    for entry in entries.flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Some(ns) = fs::read_to_string(path.join("namespace"))
            .ok()
            .and_then(|t| Namespace::parse(t.trim()))
        else {
            continue;
        };
        if !super::blob::valid_upload_id(&id) {
            continue;
        }
        let data = fs::metadata(path.join("data")).ok();
        let updated_at = data
            .as_ref()
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or_else(super::metadata::now_ms, |d| {
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
            });
        let record = UploadRecord {
            id: id.clone(),
            namespace: ns,
            client: fs::read_to_string(path.join("client")).unwrap_or_default(),
            size: data.map_or(0, |m| m.len()),
            updated_at,
            started: true,
        };
        let known = stores.meta.upload(&id).await.map_err(|e| e.to_string())?;
        if known.is_none() {
            stores
                .meta
                .upload_open(&record)
                .await
                .map_err(|e| e.to_string())?;
        }
        let _ = fs::remove_file(path.join("namespace"));
        let _ = fs::remove_file(path.join("client"));
        n += 1;
    }
    Ok(n)
}
