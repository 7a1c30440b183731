//! What the edge needs before it serves, and why it may not start: every listener's
//! certificates (files, ACME, or the development CA made once under the state dir), each
//! failure naming the listener or the key it came from.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use berth_certs::{CertSource, Resolver};

use crate::acme::{Store, StoreError};
use crate::config::{AcmeSettings, CertFiles, ListenerConfig, ProxyConfig};

/// Why the edge (or one of its commands) could not go on.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{owner}: cannot listen on {addr}: {source}")]
    Bind {
        owner: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("listener {listener} ({listen}): {source}")]
    Certificates {
        listener: String,
        listen: SocketAddr,
        source: Box<berth_certs::TlsError>,
    },
    #[error("generating development certificates in {}: {source}", dir.display())]
    DevCerts {
        dir: PathBuf,
        source: berth_certs::CertError,
    },
    #[error("listener {listener}: {what}: {reason}")]
    Acme {
        listener: String,
        what: &'static str,
        reason: String,
    },
    #[error("creating state dir {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building upstream pools: {0}")]
    Routes(std::io::Error),
    #[error("listener {listener}: TLS settings: {reason}")]
    Tls { listener: String, reason: String },
}

impl StartError {
    fn acme(l: &ListenerConfig, what: &'static str, e: StoreError) -> StartError {
        StartError::Acme {
            listener: l.name.clone(),
            what,
            reason: e.to_string(),
        }
    }
}

/// The development certificate for listeners without `tls`, made once under the state dir.
fn dev_cert(config: &ProxyConfig) -> Result<CertFiles, StartError> {
    let dir = config.state_dir.join("certs");
    let mut names = vec!["localhost".to_owned()];
    names.extend(config.dev_cert_names.iter().cloned());
    let ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    let dev =
        berth_certs::ensure_dev(&dir, &names, &ips).map_err(|source| StartError::DevCerts {
            dir: dir.clone(),
            source,
        })?;
    if dev.created {
        eprintln!(
            "berth-proxy: generated a development CA and certificate for {} in {}\n\
             Trust it for docker/podman on this host with:\n  berth-certs docker-trust HOST:PORT --ca {}\n\
             or copy {} to /etc/docker/certs.d/HOST:PORT/ca.crt",
            names.join(", "),
            dir.display(),
            dir.display(),
            dev.ca_cert.display()
        );
    }
    Ok(CertFiles {
        cert: dev.cert,
        key: dev.key,
    })
}

/// An ACME listener's stored pair (a temporary one made now when serving, if none fits).
fn acme_files(
    config: &ProxyConfig,
    l: &ListenerConfig,
    acme: &AcmeSettings,
    serving: bool,
) -> Result<Option<(CertFiles, CertSource)>, StartError> {
    let store = Store::new(&config.state_dir, &l.name);
    let issued = if serving {
        let issued = store
            .prepare(acme)
            .map_err(|e| StartError::acme(l, "preparing ACME state", e))?;
        if !issued {
            tracing::warn!(listener = %l.name, domains = ?acme.domains,
                "serving a temporary self-signed certificate until ACME issues one");
        }
        issued
    } else {
        match store.order() {
            Some(o) if store.files().cert.exists() => o.issued,
            _ => return Ok(None),
        }
    };
    let source = if issued {
        CertSource::Acme
    } else {
        CertSource::TemporarySelfSigned
    };
    Ok(Some((store.files(), source)))
}

/// Loads every listener's certificates; errors name the listener. When not `serving`
/// (check-config, the offline inventory) nothing is generated and listeners without
/// certificates yet are left out.
pub fn load_certs(config: &ProxyConfig, serving: bool) -> Result<Vec<Arc<Resolver>>, StartError> {
    let mut dev = None;
    let mut out = Vec::new();
    for l in &config.listeners {
        let (files, source) = match (&l.tls, &l.acme) {
            (Some(f), _) => (f.clone(), CertSource::File),
            (None, Some(acme)) => match acme_files(config, l, acme, serving)? {
                Some(found) => found,
                None => continue,
            },
            (None, None) if serving => match &dev {
                Some(d) => (Clone::clone(d), CertSource::DevelopmentCa),
                None => {
                    let d = dev_cert(config)?;
                    dev = Some(d.clone());
                    (d, CertSource::DevelopmentCa)
                }
            },
            (None, None) => continue,
        };
        let r = Resolver::load(&l.name, files, l.sni.clone()).map_err(|source| {
            StartError::Certificates {
                listener: l.name.clone(),
                listen: l.listen,
                source: Box::new(source),
            }
        })?;
        out.push(Arc::new(r.with_source(source)));
    }
    Ok(out)
}
