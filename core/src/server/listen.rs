//! Sockets and connections: bind every port, serve HTTP/1.1 with hyper (plain or direct
//! HTTPS), cap the connections per listener, and drain gracefully on shutdown.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
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

use super::connectors::{BoundConnector, ConnectorSet, Listen};
use super::{tasks, ServeError};
use crate::api::{Conn, Port, Registry};
use crate::config::{Config, Limits};
use crate::storage::Stores;

/// How long in-flight requests get to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Bound sockets, ready to serve.
pub struct Bound {
    pub main: TcpListener,
    /// `metrics.listen`: `/metrics`, `/healthz`, `/readyz`.
    pub metrics: Option<TcpListener>,
    pub connectors: Vec<BoundConnector>,
}

impl Bound {
    /// The actual addresses, as written to the ready file.
    pub fn addresses(&self) -> serde_json::Value {
        let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let pick = |tls: bool| -> BTreeMap<_, _> {
            self.connectors
                .iter()
                .filter(|c| c.tls.is_some() == tls)
                .map(|c| (c.repo.to_string(), addr(&c.socket)))
                .collect()
        };
        serde_json::json!({
            "main": addr(&self.main),
            "metrics": self.metrics.as_ref().map(addr),
            "connectors": pick(false),
            "https_connectors": pick(true),
        })
    }
}

async fn bind_one(addr: SocketAddr, owner: String) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            owner,
            addr,
            source,
        })
}

/// Binds the main port and every connector.
pub async fn bind(config: &Config) -> Result<Bound, ServeError> {
    let main = bind_one(config.main.listen, "main port".into()).await?;
    let metrics = match config.metrics {
        Some(addr) => Some(bind_one(addr, "metrics.listen".into()).await?),
        None => None,
    };
    let mut connectors = Vec::new();
    for r in &config.repositories {
        for wanted in Listen::of(r.connector.as_ref()) {
            connectors.push(BoundConnector::bind(&r.name, wanted).await?);
        }
    }
    Ok(Bound {
        main,
        metrics,
        connectors,
    })
}

/// Writes the bound addresses as JSON, atomically, for whoever waits on the file.
pub fn write_ready_file(path: &Path, bound: &Bound) -> Result<(), ServeError> {
    let err = |source| ServeError::ReadyFile {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bound.addresses().to_string()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Serves until `shutdown` resolves, then drains in-flight requests (with a deadline) on every
/// connection, plain and HTTPS alike.
pub async fn run(
    registry: Arc<Registry>,
    bound: Bound,
    stores: Stores,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    // Shared by the accept loops only; each connection gets its own `Watcher`, so once the
    // loops have stopped this is ours alone again (audit: connections once held clones of it,
    // and with one HTTPS connection open the drain was skipped).
    let graceful = Arc::new(GracefulShutdown::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let connectors = Arc::new(ConnectorSet::new(
        &registry,
        limits.clone(),
        graceful.clone(),
    ));
    connectors.serve(bound.connectors).await;
    registry.control.attach(connectors.clone());
    registry.events.start();
    let accept = |port: Port| Accept {
        registry: registry.clone(),
        port,
        tls: None,
        header_timeout: limits.header_read_timeout,
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        graceful: graceful.clone(),
    };
    let mut tasks = vec![tokio::spawn(
        accept(Port::Main).run(bound.main, stop_rx.clone()),
    )];
    if let Some(socket) = bound.metrics {
        tasks.push(tokio::spawn(
            accept(Port::Metrics).run(socket, stop_rx.clone()),
        ));
    }
    drop(graceful);
    tasks.push(tokio::spawn(tasks::flush_pulls(
        stores.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(tasks::sweep_uploads(
        stores,
        limits.upload_expiry,
        stop_rx.clone(),
    )));
    let lifecycle = registry.lifecycle.clone();
    let stop = stop_rx.clone();
    tasks.push(tokio::spawn(async move { lifecycle.schedule(stop).await }));
    tasks.push(tokio::spawn(tasks::watch_certificates(
        connectors.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(tasks::follow_settings(
        registry.clone(),
        stop_rx.clone(),
    )));
    shutdown.await;
    tracing::info!("shutting down: no new connections, draining in-flight requests");
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let graceful = connectors.close_all().await;
    let Some(Ok(graceful)) = graceful.map(Arc::try_unwrap) else {
        tracing::error!("accept loops still hold the shutdown handle; not draining");
        return;
    };
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain deadline passed; closing remaining connections");
    }
}

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
                Ok::<_, Infallible>(registry.handle(&port, conn, req).await)
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
