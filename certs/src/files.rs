//! Writing certificate files with the right modes, and installing a CA where Docker and
//! podman look for it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::{CertError, Result};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub(crate) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io_err(path))
}

fn write_mode(path: &Path, contents: &str, mode: u32) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    // Write beside and rename, so a reader (the edge's reload) never sees half a file.
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes a private key: mode 0600.
pub fn write_private(path: &Path, contents: &str) -> Result<()> {
    write_mode(path, contents, 0o600)
}

/// Writes a certificate: mode 0644.
pub fn write_public(path: &Path, contents: &str) -> Result<()> {
    write_mode(path, contents, 0o644)
}

/// Where a CA was installed.
#[derive(Debug, Clone)]
pub struct TrustTarget {
    pub client: &'static str,
    pub path: PathBuf,
}

/// Installs `ca.crt` for `host_port` under `root` (normally `/`) for Docker
/// (`etc/docker/certs.d`) and podman/skopeo/buildah (`etc/containers/certs.d`).
pub fn docker_trust(host_port: &str, ca_cert_pem: &str, root: &Path) -> Result<Vec<TrustTarget>> {
    let mut out = Vec::new();
    for (client, dir) in [
        ("docker", "etc/docker/certs.d"),
        ("podman", "etc/containers/certs.d"),
    ] {
        let path = root.join(dir).join(host_port).join("ca.crt");
        write_public(&path, ca_cert_pem)?;
        out.push(TrustTarget { client, path });
    }
    Ok(out)
}
