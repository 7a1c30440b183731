//! Answering the CA's validation requests on the edge itself.
//!
//! - HTTP-01: a plain-HTTP listener (port 80) answers
//!   `GET /.well-known/acme-challenge/<token>` from the tokens of open orders.
//! - TLS-ALPN-01: the validator connects to the listener's own port offering only the ALPN
//!   protocol `acme-tls/1`. The listener's rustls config offers `h2` and `http/1.1`, and
//!   rustls rightly refuses a client whose ALPN list shares nothing with the server's, so these
//!   connections never reach pingora's handshake: the pre-TLS hook reads the ClientHello (then
//!   rewinds it), and for `acme-tls/1` runs the handshake itself with the challenge certificate
//!   the listener's resolver holds, then closes. Every other connection goes on untouched.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::protocols::l4::stream::Stream as L4Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use berth_certs::{Resolver, ACME_TLS_ALPN};

const PREFIX: &str = "/.well-known/acme-challenge/";

/// HTTP-01 tokens of open orders: token → key authorization.
#[derive(Default)]
pub struct Http01Tokens(RwLock<HashMap<String, String>>);

impl Http01Tokens {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_owned(), key_authorization.to_owned());
    }

    pub fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}

/// The port-80 app.
pub struct Http01App {
    pub tokens: Arc<Http01Tokens>,
}

#[async_trait]
impl ServeHttp for Http01App {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let answer = path.strip_prefix(PREFIX).and_then(|t| self.tokens.get(t));
        let (status, body) = match answer {
            Some(key_authorization) => (StatusCode::OK, key_authorization.into_bytes()),
            None => (
                StatusCode::NOT_FOUND,
                b"this port answers ACME HTTP-01 challenges only; the registry is on HTTPS\n"
                    .to_vec(),
            ),
        };
        Response::builder()
            .status(status)
            .header("content-type", "text/plain")
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// Largest TLS record (RFC 8446: 2^14 bytes of plaintext, plus a little for the header).
const MAX_RECORD: usize = (1 << 14) + 256;

/// Reads the first TLS record (the ClientHello) and rewinds it; whether it asks for
/// `acme-tls/1`. Anything unreadable is left to the normal handshake to reject.
async fn offers_acme_alpn(stream: &mut L4Stream) -> bool {
    let mut header = [0u8; 5];
    if stream.read_exact(&mut header).await.is_err() {
        stream.rewind(&header);
        return false;
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    let mut record = header.to_vec();
    if len <= MAX_RECORD {
        record.resize(5 + len, 0);
        if stream.read_exact(&mut record[5..]).await.is_err() {
            record.truncate(5);
        }
    }
    stream.rewind(&record);
    let mut acceptor = rustls::server::Acceptor::default();
    if acceptor.read_tls(&mut record.as_slice()).is_err() {
        return false;
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => accepted
            .client_hello()
            .alpn()
            .is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN)),
        _ => false,
    }
}

/// The pre-TLS step for a listener with TLS-ALPN-01: `Ok(true)` if the connection was an
/// ACME validation and has been answered (the caller drops it).
pub async fn answer_alpn_validation(
    stream: &mut L4Stream,
    resolver: &Arc<Resolver>,
) -> std::io::Result<bool> {
    if !offers_acme_alpn(stream).await {
        return Ok(false);
    }
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![ACME_TLS_ALPN.to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let mut tls = acceptor.accept(stream).await?;
    let _ = tls.shutdown().await;
    Ok(true)
}
