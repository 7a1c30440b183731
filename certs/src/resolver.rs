//! Serving certificates from files: loaded and validated before any listener starts, chosen per
//! connection by SNI, and reloaded in place. Shared by the edge (pingora) and the core's direct
//! HTTPS connectors (tokio-rustls), which both take a rustls `ResolvesServerCert`.
//!
//! Pingora's own `TlsSettings::build()` panics inside a listener's thread on a bad file and the
//! process carries on without that port. So neither process hands a TLS stack a file path: each
//! listener gets a [`Resolver`] whose certificates were parsed, and their keys checked against
//! the certificates, at start-up. A reload builds a complete new set and swaps it in only if
//! every file loaded; otherwise the last good set keeps serving and the error is returned.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// A certificate chain and its private key on disk (PEM).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// An extra certificate served for some SNI names.
#[derive(Debug, Clone)]
pub struct SniCert {
    /// Lower-case host names.
    pub names: Vec<String>,
    pub files: CertFiles,
}

/// Warn when a certificate has fewer days than this left.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate found ({reason})")]
    NoCert { path: String, reason: String },
    #[error("{path}: no usable PEM private key ({reason})")]
    BadKey { path: String, reason: String },
    #[error("{cert} and {key} do not belong together: {reason}")]
    Mismatch {
        cert: String,
        key: String,
        reason: String,
    },
}

/// Every certificate one listener serves.
#[derive(Debug)]
struct CertSet {
    default: Arc<CertifiedKey>,
    by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// Files' modification stamps, to notice changes without inotify.
type Stamps = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

/// The per-listener certificate resolver.
#[derive(Debug)]
pub struct Resolver {
    listener: String,
    default: CertFiles,
    sni: Vec<SniCert>,
    /// Read on every handshake, written on reload: a read-mostly lock.
    current: RwLock<Arc<CertSet>>,
    /// Stamps of the files the current set was loaded from.
    stamps: Mutex<Stamps>,
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Loads and checks one certificate + key pair; logs its expiry.
fn load_pair(listener: &str, files: &CertFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |p: &PathBuf| {
        fs::read(p).map_err(|source| TlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(&files.cert)?, read(&files.key)?);
    let cert_path = files.cert.display().to_string();
    let key_path = files.key.display().to_string();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCert {
            path: cert_path.clone(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert {
            path: cert_path,
            reason: "the file holds no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.clone(),
        reason: e.to_string(),
    })?;
    let ck = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert_path.clone(),
        key: key_path,
        reason: e.to_string(),
    })?;
    match crate::describe(&String::from_utf8_lossy(&cert_pem)) {
        Ok(info) if info.days_left < EXPIRY_WARNING_DAYS => tracing::warn!(
            listener, cert = %cert_path, subject = %info.subject, not_after = %info.not_after,
            days_left = info.days_left, "certificate expires soon"
        ),
        Ok(info) => tracing::info!(
            listener, cert = %cert_path, subject = %info.subject, not_after = %info.not_after,
            days_left = info.days_left, "certificate loaded"
        ),
        Err(e) => {
            tracing::warn!(listener, cert = %cert_path, error = %e, "cannot read certificate expiry")
        }
    }
    Ok(Arc::new(ck))
}

fn stamp(p: &PathBuf) -> Option<(SystemTime, u64)> {
    fs::metadata(p)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

fn files_of(default: &CertFiles, sni: &[SniCert]) -> Vec<PathBuf> {
    let mut v = vec![default.cert.clone(), default.key.clone()];
    for s in sni {
        v.push(s.files.cert.clone());
        v.push(s.files.key.clone());
    }
    v
}

fn stamps_of(files: Vec<PathBuf>) -> Stamps {
    files
        .into_iter()
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect()
}

/// Loads a listener's whole certificate set, or fails on the first bad file.
fn build(listener: &str, default: &CertFiles, sni: &[SniCert]) -> Result<CertSet, TlsError> {
    let default = load_pair(listener, default)?;
    let mut by_name = HashMap::new();
    for s in sni {
        let ck = load_pair(listener, &s.files)?;
        for n in &s.names {
            by_name.insert(n.clone(), ck.clone());
        }
    }
    Ok(CertSet { default, by_name })
}

impl Resolver {
    /// Loads every certificate of a listener; any failure is returned (start-up aborts).
    pub fn load(
        listener: &str,
        default: CertFiles,
        sni: Vec<SniCert>,
    ) -> Result<Resolver, TlsError> {
        let stamps = stamps_of(files_of(&default, &sni));
        let set = build(listener, &default, &sni)?;
        Ok(Resolver {
            listener: listener.to_owned(),
            default,
            sni,
            current: RwLock::new(Arc::new(set)),
            stamps: Mutex::new(stamps),
        })
    }

    /// Whether any file changed since the last load attempt.
    pub fn changed(&self) -> bool {
        let stamps = self.stamps.lock().unwrap_or_else(|p| p.into_inner());
        stamps.iter().any(|(p, s)| stamp(p) != *s)
    }

    /// Reloads; on failure the old certificates stay and the error is returned for logging.
    pub fn reload(&self) -> Result<(), TlsError> {
        let attempted = stamps_of(files_of(&self.default, &self.sni));
        let result = build(&self.listener, &self.default, &self.sni);
        // Remember what was tried, so a broken file is reported once, not on every poll.
        *self.stamps.lock().unwrap_or_else(|p| p.into_inner()) = attempted;
        let set = result?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        tracing::info!(listener = %self.listener, "certificates reloaded");
        Ok(())
    }

    pub fn listener(&self) -> &str {
        &self.listener
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let set = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let by_sni = hello
            .server_name()
            .and_then(|n| set.by_name.get(&n.to_ascii_lowercase()).cloned());
        Some(by_sni.unwrap_or_else(|| set.default.clone()))
    }
}
