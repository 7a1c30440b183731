//! Plain HTTP sent to a TLS port gets a readable HTTP 400, not a TLS alert.
//!
//! A client pointed at `http://` on an HTTPS port (or a registry client that falls back to
//! HTTP) used to get rustls's alert bytes back, which clients report as `malformed HTTP response
//! "\x15\x03\x03..."` — true, and useless. Like nginx, the edge looks at the first byte before
//! the handshake: a TLS connection starts with a handshake record (0x16); anything else gets a
//! short HTTP/1.1 400 that says what to do, and the connection is closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::listeners::PreTlsProcess;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::GetSocketDigest;
use pingora::protocols::Peek;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::acme::challenge::answer_alpn_validation;
use berth_certs::Resolver;

/// How long to wait for a first byte before leaving the connection to the TLS handshake (which
/// has its own timeout).
const FIRST_BYTE_WAIT: Duration = Duration::from_secs(10);

/// The pre-TLS check, installed on every listener; listeners with TLS-ALPN-01 (by local
/// port) also answer ACME validation handshakes here (see `acme::challenge`).
#[derive(Default)]
pub struct PlainHttpRefusal {
    pub alpn_validation: HashMap<u16, Arc<Resolver>>,
}

impl PlainHttpRefusal {
    fn validating(&self, stream: &L4Stream) -> Option<&Arc<Resolver>> {
        if self.alpn_validation.is_empty() {
            return None;
        }
        let digest = stream.get_socket_digest()?;
        let port = digest.local_addr()?.as_inet()?.port();
        self.alpn_validation.get(&port)
    }
}

#[async_trait]
impl PreTlsProcess for PlainHttpRefusal {
    async fn process(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(FIRST_BYTE_WAIT, stream.try_peek(&mut first)).await {
            Ok(Ok(true)) if berth_certs::is_plain(first[0]) => {}
            Ok(Ok(true)) => return self.maybe_acme(stream).await,
            _ => return Ok(()),
        }
        let _ = stream.write_all(berth_certs::PLAIN_HTTP_REFUSAL).await;
        let _ = stream.flush().await;
        let _ = AsyncWriteExt::shutdown(stream).await;
        // Read what the client still sends, briefly: closing with unread bytes would reset the
        // connection and could destroy the answer before the client reads it.
        let mut sink = [0u8; 4096];
        let drain = async {
            let mut left = 64 * 1024usize;
            while left > 0 {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), drain).await;
        Err(pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            "plain HTTP sent to a TLS listener",
        ))
    }
}

impl PlainHttpRefusal {
    /// Answers a TLS-ALPN-01 validation itself; lets every other handshake through.
    async fn maybe_acme(&self, stream: &mut L4Stream) -> pingora::Result<()> {
        let Some(resolver) = self.validating(stream) else {
            return Ok(());
        };
        let answered =
            tokio::time::timeout(FIRST_BYTE_WAIT, answer_alpn_validation(stream, resolver)).await;
        match answered {
            Ok(Ok(false)) => Ok(()),
            Ok(Ok(true)) => Err(pingora::Error::explain(
                pingora::ErrorType::ConnectionClosed,
                "ACME TLS-ALPN-01 validation answered",
            )),
            Ok(Err(e)) => Err(pingora::Error::because(
                pingora::ErrorType::TLSHandshakeFailure,
                "ACME TLS-ALPN-01 validation handshake",
                e,
            )),
            Err(_) => Err(pingora::Error::explain(
                pingora::ErrorType::ReadTimedout,
                "ACME TLS-ALPN-01 validation timed out",
            )),
        }
    }
}
