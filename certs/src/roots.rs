//! Trust for outbound HTTPS (proxy remotes, event endpoints, the ACME CA): the system's roots
//! plus an operator's extra CA file. One function, so every client of Berth trusts the same way
//! and reports a bad `ca_file` the same way.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

/// Why an extra CA file could not be trusted.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct RootsError {
    pub path: String,
    pub reason: String,
}

/// The system's roots (those it can parse), plus every certificate in `ca_file`.
pub fn client_roots(ca_file: Option<&Path>) -> Result<RootCertStore, RootsError> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    let Some(path) = ca_file else {
        return Ok(roots);
    };
    let err = |reason: String| RootsError {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut added = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| err(e.to_string()))?;
        roots.add(cert).map_err(|e| err(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extra_ca_is_added_and_a_file_without_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = crate::make_ca("roots test", 1).unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, ca.cert_pem).unwrap();
        let base = client_roots(None).unwrap().len();
        assert_eq!(client_roots(Some(&file)).unwrap().len(), base + 1);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "nothing here").unwrap();
        let e = client_roots(Some(&empty)).unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        assert!(client_roots(Some(&dir.path().join("missing.pem"))).is_err());
    }
}
