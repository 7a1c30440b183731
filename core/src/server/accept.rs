//! One listener's accept loop and its connections: HTTP/1.1 with hyper, plain or direct
//! HTTPS (rustls over a reloadable resolver), a cap on connections per listener, a bound on
//! slow headers and handshakes, and plain HTTP to an HTTPS port answered readably.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_certs::Resolver;
use http_body_util::BodyExt;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls;
use tokio_rustls::TlsAcceptor;

use super::port::Port;
use super::router;
use crate::http::Conn;
use crate::registry::Registry;

/// A rustls acceptor over a reloadable resolver. The core speaks HTTP/1.1 only.
pub(super) fn tls_acceptor(resolver: Arc<Resolver>) -> TlsAcceptor {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
    .map(|b| b.with_no_client_auth().with_cert_resolver(resolver.clone()))
    .unwrap_or_else(|_| {
        rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_cert_resolver(resolver)
    });
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// One listener's accept loop and what every connection on it shares.
pub(super) struct Accept {
    pub registry: Arc<Registry>,
    pub port: Port,
    pub tls: Option<TlsAcceptor>,
    pub header_timeout: Duration,
    pub slots: Arc<Semaphore>,
    pub graceful: Arc<GracefulShutdown>,
}

impl Accept {
    pub async fn run(self, socket: TcpListener, mut stop: watch::Receiver<bool>) {
        let local = match socket.local_addr() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "listener has no local address");
                return;
            }
        };
        let mut saturated = false;
        loop {
            if self.slots.available_permits() == 0 && !saturated {
                saturated = true;
                tracing::warn!(%local, "connection limit reached (limits.max_connections); new connections wait");
            }
            let slot = tokio::select! {
                s = self.slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            saturated = saturated && self.slots.available_permits() == 0;
            let (stream, peer) = tokio::select! {
                r = socket.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let _ = stream.set_nodelay(true);
            let conn = Conn {
                peer,
                local,
                tls: self.tls.is_some(),
                request: 0,
            };
            self.serve(stream, conn, slot);
        }
    }

    /// Serves one connection on its own task, holding its slot until it closes.
    fn serve(
        &self,
        stream: tokio::net::TcpStream,
        conn: Conn,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) {
        let registry = self.registry.clone();
        let port = self.port.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let registry = registry.clone();
            let port = port.clone();
            async move {
                let req = req.map(|b| b.map_err(io::Error::other).boxed_unsync());
                Ok::<_, Infallible>(router::handle(&registry, &port, conn, req).await)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout);
        let graceful = self.graceful.watcher();
        let tls = self.tls.clone();
        let header_timeout = self.header_timeout;
        let peer = conn.peer;
        tokio::spawn(async move {
            let _slot = slot;
            let ended = match tls {
                None => {
                    let c = builder.serve_connection(TokioIo::new(stream), service);
                    graceful.watch(c).await
                }
                Some(acceptor) => {
                    let Some(stream) = refuse_plain_http(stream, header_timeout).await else {
                        return;
                    };
                    // The handshake gets the same bound as the request headers.
                    let stream =
                        match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                    let c = builder.serve_connection(TokioIo::new(stream), service);
                    graceful.watch(c).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
        });
    }
}

/// Plain HTTP sent to a direct-HTTPS connector gets a readable 400 and the connection closes;
/// a TLS client (first byte 0x16) is handed back for the handshake.
async fn refuse_plain_http(
    mut stream: tokio::net::TcpStream,
    wait: Duration,
) -> Option<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut first = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut first)).await {
        Ok(Ok(1)) if berth_certs::is_plain(first[0]) => {}
        Ok(Ok(1)) => return Some(stream),
        // Closed, failed or silent: nothing to answer.
        _ => return None,
    }
    let _ = stream.write_all(berth_certs::PLAIN_HTTP_REFUSAL).await;
    let _ = stream.shutdown().await;
    // Read what the client still sends, briefly: closing with unread bytes would reset the
    // connection and could destroy the answer before the client reads it.
    let mut sink = [0u8; 4096];
    let drain = async {
        use tokio::io::AsyncReadExt;
        let mut left: usize = 64 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
    None
}
