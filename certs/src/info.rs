//! Reading a certificate back: subject, issuer, SANs and expiry.

use x509_parser::extensions::GeneralName;
use x509_parser::pem::parse_x509_pem;

use crate::{CertError, Result};

/// What `berth-certs show` prints and the edge logs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// `DNS:name` and `IP:addr` entries.
    pub sans: Vec<String>,
    pub not_before: String,
    pub not_after: String,
    /// `not_before` and `not_after` as seconds since the Unix epoch.
    pub not_before_unix: i64,
    pub not_after_unix: i64,
    /// Whole days until expiry (negative once expired).
    pub days_left: i64,
    pub is_ca: bool,
}

/// Describes the first certificate in a PEM text.
pub fn describe(pem_text: &str) -> Result<CertInfo> {
    let parse_err = |reason: String| CertError::Parse {
        path: "(certificate)".into(),
        reason,
    };
    let (_, pem) = parse_x509_pem(pem_text.as_bytes()).map_err(|e| parse_err(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| parse_err(e.to_string()))?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(format!("DNS:{d}")),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        16 => <[u8; 16]>::try_from(*b).map(std::net::IpAddr::from).ok(),
                        _ => None,
                    };
                    if let Some(ip) = ip {
                        sans.push(format!("IP:{ip}"));
                    }
                }
                other => sans.push(format!("{other:?}")),
            }
        }
    }
    let validity = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    let days_left = (validity.not_after.timestamp() - now.timestamp()).div_euclid(86_400);
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        sans,
        not_before: validity.not_before.to_string(),
        not_after: validity.not_after.to_string(),
        not_before_unix: validity.not_before.timestamp(),
        not_after_unix: validity.not_after.timestamp(),
        days_left,
        is_ca: cert.is_ca(),
    })
}
