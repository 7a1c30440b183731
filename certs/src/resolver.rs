//! Serving certificates from files: loaded and validated before any listener starts, chosen per
//! connection by SNI, and reloaded in place. Shared by the edge (pingora) and the core's direct
//! HTTPS connectors (tokio-rustls), which both take a rustls `ResolvesServerCert`.
//!
//! Pingora's own `TlsSettings::build()` panics inside a listener's thread on a bad file and the
//! process carries on without that port. So neither process hands a TLS stack a file path: each
//! listener gets a [`Resolver`] whose certificates were parsed, and their keys checked against
//! the certificates, at start-up. A reload builds a complete new set and swaps it in only if
//! every file loaded; otherwise the last good set keeps serving and the error is returned.
//!
//! Each resolver also remembers what it serves (subject, SANs, expiry, source) and how its last
//! reload went: the edge's certificate inventory and expiry metrics read that, not the files,
//! so they show what clients actually get. ACME listeners use the same resolver over files the
//! ACME task writes; during a TLS-ALPN-01 challenge the resolver answers `acme-tls/1`
//! handshakes with the challenge certificate ([`Resolver::set_alpn_challenge`]).

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
use serde::{Deserialize, Serialize};

use crate::CertInfo;

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
    /// What each loaded file holds, default first.
    records: Vec<Record>,
}

/// One loaded certificate, as the inventory shows it.
#[derive(Debug, Clone)]
struct Record {
    sni: Vec<String>,
    file: String,
    info: Option<CertInfo>,
}

/// Where a listener's certificates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertSource {
    /// Operator-managed files (`tls: { cert, key }`, `sni`).
    File,
    /// Issued and renewed by the edge's ACME client.
    Acme,
    /// A placeholder the ACME client serves until its first certificate arrives.
    TemporarySelfSigned,
    /// The development CA the edge generates for listeners without `tls`.
    DevelopmentCa,
}

impl CertSource {
    /// The name the inventory and the metrics use (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            CertSource::File => "file",
            CertSource::Acme => "acme",
            CertSource::TemporarySelfSigned => "temporary-self-signed",
            CertSource::DevelopmentCa => "development-ca",
        }
    }
}

/// How the last load or reload went.
#[derive(Debug, Clone)]
struct ReloadRecord {
    at: SystemTime,
    error: Option<String>,
}

/// One certificate in the inventory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertEntry {
    pub listener: String,
    /// SNI names this certificate answers for; empty for the listener's default.
    pub sni: Vec<String>,
    pub file: String,
    pub source: CertSource,
    #[serde(flatten)]
    pub info: Option<CertInfo>,
    /// When the listener's certificates were last (re)loaded, RFC 3339.
    pub last_reload: String,
    /// `None` if that load succeeded; otherwise why not (the previous set keeps serving).
    pub last_reload_error: Option<String>,
}

impl CertEntry {
    /// The `certificate` label of the expiry metrics: its SNI names when it answers for some,
    /// else its subject; `None` if the file could not be read.
    pub fn metric_name(&self) -> Option<String> {
        let info = self.info.as_ref()?;
        Some(if self.sni.is_empty() {
            info.subject.clone()
        } else {
            self.sni.join(",")
        })
    }
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
    source: Mutex<CertSource>,
    last_reload: Mutex<ReloadRecord>,
    /// TLS-ALPN-01 challenge certificates by (lower-case) domain, while an order is open.
    alpn_challenges: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn rfc3339(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Loads and checks one certificate + key pair; logs its expiry.
fn load_pair(
    listener: &str,
    files: &CertFiles,
) -> Result<(Arc<CertifiedKey>, Option<CertInfo>), TlsError> {
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
    let info = match crate::describe(&String::from_utf8_lossy(&cert_pem)) {
        Ok(info) => {
            if info.days_left < EXPIRY_WARNING_DAYS {
                tracing::warn!(
                    listener, cert = %cert_path, subject = %info.subject, not_after = %info.not_after,
                    days_left = info.days_left, "certificate expires soon"
                );
            } else {
                tracing::info!(
                    listener, cert = %cert_path, subject = %info.subject, not_after = %info.not_after,
                    days_left = info.days_left, "certificate loaded"
                );
            }
            Some(info)
        }
        Err(e) => {
            tracing::warn!(listener, cert = %cert_path, error = %e, "cannot read certificate expiry");
            None
        }
    };
    Ok((Arc::new(ck), info))
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
    let record = |sni: &[String], files: &CertFiles, info| Record {
        sni: sni.to_vec(),
        file: files.cert.display().to_string(),
        info,
    };
    let (default_key, info) = load_pair(listener, default)?;
    let mut records = vec![record(&[], default, info)];
    let mut by_name = HashMap::new();
    for s in sni {
        let (ck, info) = load_pair(listener, &s.files)?;
        records.push(record(&s.names, &s.files, info));
        for n in &s.names {
            by_name.insert(n.clone(), ck.clone());
        }
    }
    Ok(CertSet {
        default: default_key,
        by_name,
        records,
    })
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
            source: Mutex::new(CertSource::File),
            last_reload: Mutex::new(ReloadRecord {
                at: SystemTime::now(),
                error: None,
            }),
            alpn_challenges: RwLock::new(HashMap::new()),
        })
    }

    /// Sets where the certificates come from (shown in the inventory).
    pub fn with_source(self, source: CertSource) -> Resolver {
        *lock(&self.source) = source;
        self
    }

    /// Changes the source, e.g. once ACME replaced the temporary certificate.
    pub fn set_source(&self, source: CertSource) {
        *lock(&self.source) = source;
    }

    pub fn source(&self) -> CertSource {
        *lock(&self.source)
    }

    /// What this listener serves now, default certificate first.
    pub fn inventory(&self) -> Vec<CertEntry> {
        let set = self.current_set();
        let source = self.source();
        let reload = lock(&self.last_reload).clone();
        set.records
            .iter()
            .map(|r| CertEntry {
                listener: self.listener.clone(),
                sni: r.sni.clone(),
                file: r.file.clone(),
                source,
                info: r.info.clone(),
                last_reload: rfc3339(reload.at),
                last_reload_error: reload.error.clone(),
            })
            .collect()
    }

    /// Serves `key` to TLS-ALPN-01 validation handshakes for `domain` (or stops, with `None`).
    pub fn set_alpn_challenge(&self, domain: &str, key: Option<Arc<CertifiedKey>>) {
        let mut map = self
            .alpn_challenges
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match key {
            Some(k) => map.insert(domain.to_ascii_lowercase(), k),
            None => map.remove(&domain.to_ascii_lowercase()),
        };
    }

    fn current_set(&self) -> Arc<CertSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether any file changed since the last load attempt.
    pub fn changed(&self) -> bool {
        let stamps = lock(&self.stamps);
        stamps.iter().any(|(p, s)| stamp(p) != *s)
    }

    /// Reloads; on failure the old certificates stay and the error is returned for logging.
    pub fn reload(&self) -> Result<(), TlsError> {
        let attempted = stamps_of(files_of(&self.default, &self.sni));
        let result = build(&self.listener, &self.default, &self.sni);
        // Remember what was tried, so a broken file is reported once, not on every poll.
        *lock(&self.stamps) = attempted;
        *lock(&self.last_reload) = ReloadRecord {
            at: SystemTime::now(),
            error: result.as_ref().err().map(|e| e.to_string()),
        };
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
        let acme = hello
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            let map = self
                .alpn_challenges
                .read()
                .unwrap_or_else(|p| p.into_inner());
            // No challenge open for that name: fail the handshake rather than hand a
            // validator the serving certificate.
            return map.get(&name).cloned();
        }
        let set = self.current_set();
        let by_sni = hello
            .server_name()
            .and_then(|n| set.by_name.get(&n.to_ascii_lowercase()).cloned());
        Some(by_sni.unwrap_or_else(|| set.default.clone()))
    }
}
