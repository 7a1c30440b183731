//! The edge assembled and served: ports reserved up front, the pingora server with one proxy
//! service carrying every listener, the ACME tasks and HTTP-01 listeners, the metrics listener
//! and the maintenance task, run until `shutdown`. `main.rs` calls [`run`] with the signals;
//! a test calls it in a thread with port 0 and a channel.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use berth_certs::Resolver;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::background::background_service;

use crate::acme::{AcmeHttp, AcmeTask, Http01App, Http01Tokens, Store};
use crate::config::{Challenge, ProxyConfig};
use crate::edge::{Edge, InFlight};
use crate::lifecycle::{DrainSignal, Maintenance};
use crate::observe::{EdgeState, MetricsApp};
use crate::plain_http::PlainHttpRefusal;
use crate::routing::Routes;
use crate::start::{load_certs, StartError};
use crate::tls_observe::HandshakeCounter;

/// Every address the edge will listen on, checked free before pingora binds them (pingora binds
/// inside its service threads, where a failure does not stop the process). A port 0 in the
/// configuration is replaced by a free port picked now.
pub struct Listeners {
    /// `(listener name or "metrics", address)`.
    pub addrs: Vec<(String, SocketAddr)>,
}

impl Listeners {
    pub fn reserve(config: &mut ProxyConfig) -> Result<Listeners, StartError> {
        let mut addrs = Vec::new();
        for l in &mut config.listeners {
            let picked = probe(&format!("listener {}", l.name), l.listen)?;
            // Clients see the picked port unless `external_port` named another.
            if l.external_port == l.listen.port() {
                l.external_port = picked.port();
            }
            l.listen = picked;
            addrs.push((l.name.clone(), l.listen));
        }
        if let Some(m) = &mut config.metrics {
            *m = probe("metrics.listen", *m)?;
            addrs.push(("metrics".to_owned(), *m));
        }
        Ok(Listeners { addrs })
    }

    /// The address of the listener (or `"metrics"`) named `name`.
    pub fn addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }
}

fn probe(owner: &str, addr: SocketAddr) -> Result<SocketAddr, StartError> {
    TcpListener::bind(addr)
        .and_then(|l| l.local_addr())
        .map_err(|source| StartError::Bind {
            owner: owner.to_owned(),
            addr,
            source,
        })
}

/// When the edge stops.
pub enum Shutdown {
    /// SIGTERM drains (the process exits once nothing is in flight, or at `drain`), SIGINT
    /// stops at once, SIGQUIT hands the sockets to a new process.
    Signals,
    /// When the future resolves: listeners close and in-flight requests are cut; [`run`]
    /// returns.
    When(Pin<Box<dyn Future<Output = ()> + Send>>),
}

struct WhenSignal(Mutex<Option<Pin<Box<dyn Future<Output = ()> + Send>>>>);

#[async_trait]
impl ShutdownSignalWatch for WhenSignal {
    async fn recv(&self) -> ShutdownSignal {
        let fut = self.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match fut {
            Some(f) => f.await,
            None => std::future::pending().await,
        }
        ShutdownSignal::FastShutdown
    }
}

/// Serves `config` on `listeners` until `shutdown`; `ready_file` gets the listener addresses
/// as JSON once every listener accepts connections.
pub fn run(
    config: ProxyConfig,
    listeners: Listeners,
    shutdown: Shutdown,
    ready_file: Option<PathBuf>,
) -> Result<(), StartError> {
    let resolvers = load_certs(&config, true)?;
    let routes = Arc::new(Routes::new(&config).map_err(StartError::Routes)?);
    std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let mut server = Server::new_with_opt_and_conf(None, server_conf(&config));
    server.bootstrap();
    let in_flight = InFlight::default();
    let pre_tls = acme_services(&mut server, &config, &resolvers)?;
    let svc = edge_service(&server, &config, &routes, &resolvers, &in_flight, pre_tls)?;
    server.add_service(svc);
    let state = Arc::new(EdgeState { routes, resolvers });
    if let Some(addr) = config.metrics {
        let app = MetricsApp {
            state: state.clone(),
        };
        let mut metrics =
            pingora::services::listening::Service::new("berth-edge-metrics".to_owned(), app);
        metrics.add_tcp(&addr.to_string());
        metrics.threads = Some(1);
        server.add_service(metrics);
        tracing::info!(listen = %addr, "metrics listener configured");
    }
    let maintenance = Maintenance {
        state,
        metrics: config.metrics.is_some(),
        interval: config.health_check_interval,
        ready_file,
        listeners: listeners.addrs,
    };
    server.add_service(background_service("berth-edge-maintenance", maintenance));
    let shutdown_signal: Box<dyn ShutdownSignalWatch> = match shutdown {
        Shutdown::Signals => Box::new(DrainSignal {
            in_flight,
            deadline: config.drain,
        }),
        Shutdown::When(f) => Box::new(WhenSignal(Mutex::new(Some(f)))),
    };
    server.run(RunArgs { shutdown_signal });
    crate::lifecycle::flush_logs();
    Ok(())
}

fn server_conf(config: &ProxyConfig) -> ServerConf {
    let state = |file: &str| config.state_dir.join(file).display().to_string();
    ServerConf {
        threads: config.threads,
        // The grace period is the drain deadline; DrainSignal exits earlier once idle.
        grace_period_seconds: Some(config.drain.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: state("upgrade.sock"),
        pid_file: state("berth-proxy.pid"),
        ..ServerConf::default()
    }
}

/// ACME: one issuance task per ACME listener, the port-80 listeners HTTP-01 needs, and the
/// TLS-ALPN-01 answering in the pre-TLS hook. Returns that hook.
fn acme_services(
    server: &mut Server,
    config: &ProxyConfig,
    resolvers: &[Arc<Resolver>],
) -> Result<PlainHttpRefusal, StartError> {
    let mut pre_tls = PlainHttpRefusal::default();
    let tokens = Arc::new(Http01Tokens::default());
    let mut http_ports = std::collections::BTreeSet::new();
    for (l, resolver) in config.listeners.iter().zip(resolvers) {
        let Some(acme) = &l.acme else { continue };
        match acme.challenge {
            Challenge::TlsAlpn01 => {
                pre_tls
                    .alpn_validation
                    .insert(l.listen.port(), resolver.clone());
            }
            Challenge::Http01 => {
                http_ports.insert(acme.http_listen);
            }
        }
        let http = AcmeHttp::new(acme.ca_file.as_deref()).map_err(|e| StartError::Acme {
            listener: l.name.clone(),
            what: "tls.acme.ca_file",
            reason: e.to_string(),
        })?;
        let task = AcmeTask {
            listener: l.name.clone(),
            settings: acme.clone(),
            store: Store::new(&config.state_dir, &l.name),
            resolver: resolver.clone(),
            tokens: tokens.clone(),
            http,
        };
        server.add_service(background_service(&format!("acme {}", l.name), task));
    }
    for addr in http_ports {
        probe("tls.acme.http_listen (HTTP-01 challenges)", addr)?;
        let app = Http01App {
            tokens: tokens.clone(),
        };
        let mut svc =
            pingora::services::listening::Service::new("berth-acme-http01".to_owned(), app);
        svc.add_tcp(&addr.to_string());
        svc.threads = Some(1);
        server.add_service(svc);
        tracing::info!(listen = %addr, "ACME HTTP-01 listener configured");
    }
    Ok(pre_tls)
}

/// The one pingora proxy service that carries every listener (TLS via each listener's
/// resolver, h2 with wide windows, the plain-HTTP refusal before the handshake).
fn edge_service(
    server: &Server,
    config: &ProxyConfig,
    routes: &Arc<Routes>,
    resolvers: &[Arc<Resolver>],
    in_flight: &InFlight,
    pre_tls: PlainHttpRefusal,
) -> Result<pingora::services::listening::Service<pingora::proxy::HttpProxy<Edge>>, StartError> {
    let edge = Edge {
        routes: routes.clone(),
        timeouts: config.timeouts.clone(),
        in_flight: in_flight.clone(),
        metrics: config.metrics.is_some(),
    };
    let mut svc =
        pingora::proxy::http_proxy_service_with_name(&server.configuration, edge, "berth-edge");
    // Go clients (docker) speak h2 when offered; the default 64 KiB window makes uploads 3-5x
    // slower, so open it wide.
    let mut h2 = pingora::protocols::http::v2::server::default_h2_options();
    h2.initial_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(256 * 1024);
    if let Some(app) = svc.app_logic_mut() {
        app.h2_options = Some(h2);
    }
    svc.endpoints().set_pre_tls_callback(Arc::new(pre_tls));
    for (l, resolver) in config.listeners.iter().zip(resolvers) {
        let counter = HandshakeCounter {
            listener: l.name.clone(),
        };
        let mut tls =
            TlsSettings::with_callbacks(Box::new(counter)).map_err(|e| StartError::Tls {
                listener: l.name.clone(),
                reason: e.to_string(),
            })?;
        tls.set_cert_resolver(resolver.clone());
        tls.enable_h2();
        svc.add_tls_with_settings(&l.listen.to_string(), None, tls);
        tracing::info!(listener = %l.name, listen = %l.listen, upstreams = ?l.upstreams, "listener configured");
    }
    Ok(svc)
}
