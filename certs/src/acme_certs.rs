//! The two certificates an ACME client makes itself: the temporary self-signed one a listener
//! serves until its first certificate is issued, and the TLS-ALPN-01 validation certificate
//! (RFC 8737: the domain as its only SAN, and the critical `acmeIdentifier` extension holding
//! the SHA-256 of the key authorization).

use rcgen::{CertificateParams, CustomExtension, DistinguishedName, DnType, KeyPair};
use time::{Duration, OffsetDateTime};

use crate::issue::Issued;
use crate::Result;

/// The subject of a temporary certificate, so logs and the inventory can tell it apart.
pub const TEMPORARY_CN: &str = "Berth temporary certificate (ACME issuance pending)";

/// A self-signed certificate for `domains`, valid for a week.
pub fn temporary(domains: &[String]) -> Result<Issued> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(domains.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, TEMPORARY_CN);
    params.distinguished_name = dn;
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(7);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The TLS-ALPN-01 certificate for `domain`; `digest` is SHA-256(key authorization). DER of
/// the certificate and of its PKCS#8 key.
pub fn alpn_challenge(domain: &str, digest: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![domain.to_owned()])?;
    params
        .custom_extensions
        .push(CustomExtension::new_acme_identifier(digest));
    let cert = params.self_signed(&key)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}
