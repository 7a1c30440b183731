//! Making a CA and issuing server certificates with rcgen.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::files::{read, write_private, write_public};
use crate::{CertError, Result};

/// Validity of a CA, in days.
pub const CA_DAYS: i64 = 3650;
/// Validity of a leaf: 825 days is the longest Apple platforms and browsers accept.
pub const LEAF_DAYS: i64 = 825;

/// A certificate and its private key, PEM-encoded.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    // A little slack backwards for clocks that are slightly behind.
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

/// Makes a self-signed CA.
pub fn make_ca(common_name: &str, days: i64) -> Result<Issued> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Berth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, days);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a server certificate for `hosts` and `ips`, signed by the CA given as PEM.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    hosts: &[String],
    ips: &[IpAddr],
    days: i64,
) -> Result<Issued> {
    if hosts.is_empty() && ips.is_empty() {
        return Err(CertError::NoNames);
    }
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(hosts.to_vec())?;
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let mut dn = DistinguishedName::new();
    let cn = hosts.first().cloned().unwrap_or_else(|| ips[0].to_string());
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "Berth");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, days);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Paths of a development CA and server certificate.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Whether they were made by this call (and so the user needs to be told how to trust them).
    pub created: bool,
}

/// Makes a development CA and server certificate under `dir` once; later calls reuse them.
pub fn ensure_dev(dir: &Path, hosts: &[String], ips: &[IpAddr]) -> Result<DevCerts> {
    let ca_cert = dir.join("ca.crt");
    let ca_key = dir.join("ca.key");
    let cert = dir.join("server.crt");
    let key = dir.join("server.key");
    let paths = DevCerts {
        ca_cert: ca_cert.clone(),
        cert: cert.clone(),
        key: key.clone(),
        created: false,
    };
    if cert.exists() && key.exists() && ca_cert.exists() {
        return Ok(paths);
    }
    let ca = if ca_cert.exists() && ca_key.exists() {
        Issued {
            cert_pem: read(&ca_cert)?,
            key_pem: read(&ca_key)?,
        }
    } else {
        let ca = make_ca("Berth development CA", CA_DAYS)?;
        write_public(&ca_cert, &ca.cert_pem)?;
        write_private(&ca_key, &ca.key_pem)?;
        ca
    };
    let leaf = issue(&ca.cert_pem, &ca.key_pem, hosts, ips, LEAF_DAYS)?;
    write_public(&cert, &leaf.cert_pem)?;
    write_private(&key, &leaf.key_pem)?;
    Ok(DevCerts {
        created: true,
        ..paths
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::describe;

    #[test]
    fn issued_leaf_has_the_names_and_chains_to_the_ca() {
        let ca = make_ca("Test CA", 30).unwrap();
        let ip: IpAddr = "::1".parse().unwrap();
        let leaf = issue(
            &ca.cert_pem,
            &ca.key_pem,
            &["registry.test".into()],
            &[ip],
            10,
        )
        .unwrap();
        let info = describe(&leaf.cert_pem).unwrap();
        assert!(
            info.sans.contains(&"DNS:registry.test".to_owned()),
            "{:?}",
            info.sans
        );
        assert!(info.sans.contains(&"IP:::1".to_owned()), "{:?}", info.sans);
        assert!((9..=10).contains(&info.days_left), "{}", info.days_left);
        let ca_info = describe(&ca.cert_pem).unwrap();
        assert_eq!(info.issuer, ca_info.subject);
        assert!(ca_info.is_ca && !info.is_ca);
    }

    #[test]
    fn needs_a_name() {
        let ca = make_ca("Test CA", 30).unwrap();
        assert!(matches!(
            issue(&ca.cert_pem, &ca.key_pem, &[], &[], 10),
            Err(CertError::NoNames)
        ));
    }

    #[test]
    fn dev_certs_are_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_dev(dir.path(), &["localhost".into()], &[]).unwrap();
        assert!(first.created);
        let before = std::fs::read(&first.cert).unwrap();
        let again = ensure_dev(dir.path(), &["localhost".into()], &[]).unwrap();
        assert!(!again.created);
        assert_eq!(std::fs::read(&again.cert).unwrap(), before);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("server.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
