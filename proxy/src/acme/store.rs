//! What ACME keeps under `state_dir/acme/`: one account per CA directory
//! (`accounts/<sha256 of the URL>.json`, the credentials instant-acme serialises) and, per
//! listener, the serving pair (`<listener>/cert.pem`, `key.pem`) with `order.json` saying for
//! which directory and domains it was issued. Secrets are written 0600, atomically, so a
//! restart neither registers again nor issues again, and a crash never leaves half a file.
//! `<listener>/renew-requested` is `berth-proxy renew`'s request to the running edge: a file,
//! so only who may write the state dir can make the edge order (a CA's rate limits count
//! every order).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::AcmeSettings;
use berth_certs::CertFiles;

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Certs(#[from] berth_certs::CertError),
    #[error("{path}: {reason}")]
    Corrupt { path: String, reason: String },
}

/// What the stored certificate was issued for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub directory: String,
    pub domains: Vec<String>,
    /// `false` while the stored pair is the temporary self-signed one.
    pub issued: bool,
}

/// One listener's ACME files.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    accounts: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A file-name-safe form of a listener name.
fn safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Store {
    pub fn new(state_dir: &Path, listener: &str) -> Store {
        let root = state_dir.join("acme");
        Store {
            dir: root.join(safe(listener)),
            accounts: root.join("accounts"),
        }
    }

    /// The serving pair the listener's resolver loads.
    pub fn files(&self) -> CertFiles {
        CertFiles {
            cert: self.dir.join("cert.pem"),
            key: self.dir.join("key.pem"),
        }
    }

    fn order_path(&self) -> PathBuf {
        self.dir.join("order.json")
    }

    pub fn order(&self) -> Option<OrderRecord> {
        let text = std::fs::read(self.order_path()).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Makes sure a pair exists for exactly these settings: the stored one if it was issued
    /// for the same directory and domains, else a new temporary self-signed one. Returns
    /// whether the stored pair is an issued certificate.
    pub fn prepare(&self, settings: &AcmeSettings) -> Result<bool, StoreError> {
        let files = self.files();
        let wanted = |issued| OrderRecord {
            directory: settings.directory.clone(),
            domains: settings.domains.clone(),
            issued,
        };
        if let Some(o) = self.order() {
            if o == wanted(o.issued) && files.cert.exists() && files.key.exists() {
                return Ok(o.issued);
            }
        }
        let temp = berth_certs::temporary(&settings.domains)?;
        self.save(&temp.cert_pem, &temp.key_pem, &wanted(false))?;
        Ok(false)
    }

    /// Stores a pair and its record: key first, then certificate, each atomically.
    pub fn save(
        &self,
        cert_pem: &str,
        key_pem: &str,
        order: &OrderRecord,
    ) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let files = self.files();
        berth_certs::write_private(&files.key, key_pem)?;
        berth_certs::write_public(&files.cert, cert_pem)?;
        let json = serde_json::to_string_pretty(order).unwrap_or_default();
        berth_certs::write_private(&self.order_path(), &json)?;
        Ok(())
    }

    fn renew_path(&self) -> PathBuf {
        self.dir.join("renew-requested")
    }

    /// Asks the running edge to order a new certificate now, whatever the current one's age.
    pub fn request_renewal(&self) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let at = httpdate::fmt_http_date(std::time::SystemTime::now());
        berth_certs::write_private(&self.renew_path(), &at)?;
        Ok(())
    }

    pub fn renewal_requested(&self) -> bool {
        self.renew_path().exists()
    }

    /// Called once the requested certificate is installed.
    pub fn clear_renewal_request(&self) {
        let _ = std::fs::remove_file(self.renew_path());
    }

    fn account_path(&self, directory: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(directory.as_bytes()));
        self.accounts.join(format!("{}.json", &hash[..32]))
    }

    /// The stored account credentials for a CA, as JSON.
    pub fn account(&self, directory: &str) -> Result<Option<String>, StoreError> {
        let path = self.account_path(directory);
        match std::fs::read_to_string(&path) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Drops the stored account of a CA (it no longer exists there).
    pub fn forget_account(&self, directory: &str) -> Result<(), StoreError> {
        let path = self.account_path(directory);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    pub fn save_account(&self, directory: &str, json: &str) -> Result<(), StoreError> {
        let path = self.account_path(directory);
        std::fs::create_dir_all(&self.accounts).map_err(io(&self.accounts))?;
        berth_certs::write_private(&path, json)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::Challenge;

    fn settings(domains: &[&str]) -> AcmeSettings {
        AcmeSettings {
            directory: "https://ca.test/dir".into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            contact: vec![],
            challenge: Challenge::TlsAlpn01,
            ca_file: None,
            http_listen: ([127, 0, 0, 1], 80).into(),
            renew_before: None,
            eab: None,
        }
    }

    #[test]
    fn a_temporary_pair_is_made_once_and_replaced_when_domains_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path(), "l:443");
        assert!(!store.prepare(&settings(&["a.test"])).unwrap());
        let first = std::fs::read(store.files().cert).unwrap();
        assert!(!store.prepare(&settings(&["a.test"])).unwrap());
        assert_eq!(std::fs::read(store.files().cert).unwrap(), first);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(store.files().key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        store.prepare(&settings(&["a.test", "b.test"])).unwrap();
        assert_ne!(std::fs::read(store.files().cert).unwrap(), first);
    }
}
