//! Certificates for running a registry over HTTPS with a private CA.
//!
//! Docker and podman only talk HTTPS to a registry that is not on loopback, and a self-signed
//! certificate must be trusted explicitly (`/etc/docker/certs.d/HOST:PORT/ca.crt`). This crate
//! makes a CA, issues server certificates with the right subject alternative names, installs
//! the CA where the clients look, and reads certificates back (subject, SANs, expiry) for the
//! edge's expiry warnings.
//!
//! Defaults follow what browsers and Go's TLS stack accept: ECDSA P-256 keys, leaves valid for
//! 825 days, CA for 10 years, private keys written with mode 0600.

mod acme_certs;
mod files;
mod info;
mod issue;
mod plain_http;
pub mod resolver;
mod roots;

pub use acme_certs::{alpn_challenge, temporary, TEMPORARY_CN};
pub use files::{docker_trust, write_private, write_public, TrustTarget};
pub use info::{describe, CertInfo};
pub use issue::{ensure_dev, issue, make_ca, DevCerts, Issued, CA_DAYS, LEAF_DAYS};
pub use plain_http::{is_plain, PLAIN_HTTP_REFUSAL, TLS_HANDSHAKE};
pub use resolver::{CertEntry, CertFiles, CertSource, Resolver, SniCert, TlsError, ACME_TLS_ALPN};
pub use roots::{client_roots, RootsError};

/// Certificate tooling errors.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("generating a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: not a PEM certificate: {reason}")]
    Parse { path: String, reason: String },
    #[error("a server certificate needs at least one --host or --ip")]
    NoNames,
}

pub type Result<T> = std::result::Result<T, CertError>;
