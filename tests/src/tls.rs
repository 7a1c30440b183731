//! A minimal HTTPS client for load tests: one keep-alive rustls connection per client thread,
//! requests with `Content-Length` bodies, responses read by their `Content-Length`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A TLS client configuration trusting one CA.
pub fn config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA file") {
        roots.add(cert.expect("CA certificate")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Status, lower-cased headers and body of a response.
pub type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// One keep-alive HTTPS connection.
pub struct Conn {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    host: String,
}

impl Conn {
    pub fn open(
        config: &Arc<rustls::ClientConfig>,
        addr: &str,
        host: &str,
    ) -> std::io::Result<Conn> {
        // SNI carries the name alone; the Host header keeps the port.
        let sni = host.rsplit_once(':').map_or(host, |(h, _)| h);
        let name = ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
        let tls =
            rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        let tcp = TcpStream::connect(addr)?;
        tcp.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(rustls::StreamOwned::new(tls, tcp)),
            host: host.to_owned(),
        })
    }

    /// Sends a request and returns `(status, headers, body)`.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let w = self.stream.get_mut();
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_owned());
                if k == "content-length" {
                    len = v.parse().unwrap_or(0);
                }
                headers.push((k, v));
            }
        }
        let mut body = vec![0u8; if method == "HEAD" { 0 } else { len }];
        self.stream.read_exact(&mut body)?;
        Ok((status, headers, body))
    }
}
