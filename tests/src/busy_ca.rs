//! An ACME server that is always busy: every request gets `503` with a `Retry-After`, the way
//! Let's Encrypt answers when overloaded or rate-limiting. Pebble cannot be made to send
//! `Retry-After` (letsencrypt/pebble#399), so this is the one stand-in among the ACME tests;
//! it speaks real HTTPS (rustls, a certificate from `berth-certs`) and records when each
//! request arrived, which is what a test of the client's pacing needs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The server; it runs until the process ends (its thread only accepts and answers).
pub struct BusyCa {
    pub port: u16,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl BusyCa {
    /// Serves `cert`/`key` on 127.0.0.1, answering `Retry-After: retry_after` (seconds).
    pub fn start(cert: &Path, key: &Path, retry_after: u64) -> BusyCa {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .expect("certificate file")
            .map(|c| c.expect("certificate"))
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).expect("key file");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("protocol versions")
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .expect("certificate and key"),
        );
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = arrivals.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let conn = rustls::ServerConnection::new(config.clone()).expect("TLS session");
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, stream));
                let mut line = String::new();
                // The request's head; its body, if any, is left unread (the answer closes).
                while tls.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                seen.lock().expect("arrivals").push(Instant::now());
                let body = r#"{"type":"urn:ietf:params:acme:error:rateLimited","detail":"busy"}"#;
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n\
                     Content-Type: application/problem+json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut tls = tls.into_inner();
                let _ = tls.write_all(answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        BusyCa { port, arrivals }
    }

    /// When each request arrived, in order.
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().expect("arrivals").clone()
    }
}
