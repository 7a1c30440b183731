//! `berth-proxy`: the HTTPS edge. `anyhow` lives here only.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;

use berth_certs::{CertSource, Resolver};
use berth_proxy::acme::{AcmeHttp, AcmeTask, Http01App, Http01Tokens, Store};
use berth_proxy::config::{CertFiles, Challenge, ProxyConfig};
use berth_proxy::edge::{Edge, InFlight};
use berth_proxy::lifecycle::{DrainSignal, Maintenance};
use berth_proxy::observe::{EdgeState, MetricsApp};
use berth_proxy::plain_http::PlainHttpRefusal;
use berth_proxy::routing::Routes;
use berth_proxy::tls_observe::{HandshakeCounter, HandshakeFailureLayer};

#[derive(Parser)]
#[command(name = "berth-proxy", version, about = "Berth HTTPS edge")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the listeners of a configuration file.
    Serve {
        #[arg(long)]
        config: PathBuf,
        /// Write the listener addresses as JSON here once every listener accepts connections.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Validate a configuration file (and its certificates) without starting.
    CheckConfig { config: PathBuf },
    /// The certificate inventory: every certificate the edge serves, with its subject, SANs,
    /// issuer, expiry, source and last reload. Asks the running edge (its metrics listener)
    /// and falls back to reading the configured files.
    Certs {
        #[arg(long)]
        config: PathBuf,
        /// Print JSON (the metrics listener's `/certs` document) instead of a table.
        #[arg(long)]
        json: bool,
        /// Also list a core's direct-HTTPS connector certificates, asking its metrics listener
        /// (`metrics.listen` in core.yaml) at this address; repeatable.
        #[arg(long = "core", value_name = "ADDR")]
        cores: Vec<SocketAddr>,
    },
    /// Make the running edge order a new ACME certificate for a listener now (after a CA
    /// change, a revocation, a key that may have leaked), whatever the current one's age.
    Renew {
        #[arg(long)]
        config: PathBuf,
        /// The listener's `name` in proxy.yaml.
        listener: String,
    },
}

/// Log filter: pingora logs every failed TLS handshake at ERROR (scanners, clients without the
/// CA); those are noise for an operator, so that module is silenced unless RUST_LOG says otherwise.
const DEFAULT_LOG: &str = "info,pingora_core::services::listening=off";

fn main() -> anyhow::Result<()> {
    // Every rustls object (resolvers, pingora's acceptors) uses this provider: ring, TLS 1.2+1.3.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let c = ProxyConfig::load(&config)?;
            let resolvers = load_certs(&c, false)?;
            println!(
                "{}: ok ({} listeners, {} certificate sets)",
                config.display(),
                c.listeners.len(),
                resolvers.len()
            );
            Ok(())
        }
        Command::Certs {
            config,
            json,
            cores,
        } => {
            let c = ProxyConfig::load(&config)?;
            print_certs(&c, json, &cores)
        }
        Command::Renew { config, listener } => {
            let c = ProxyConfig::load(&config)?;
            request_renewal(&c, &listener)
        }
        Command::Serve { config, ready_file } => {
            init_logging();
            let config = ProxyConfig::load(&config)?;
            serve(config, ready_file)
        }
    }
}

/// Log lines (one access line per request) go through a background writer, so a slow log file
/// never stalls a proxy thread. Beside the log, a layer counts pingora's handshake failures.
fn init_logging() {
    use tracing_subscriber::prelude::*;
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    berth_proxy::lifecycle::keep_log_guard(guard);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_LOG.into());
    let log = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let failures = HandshakeFailureLayer.with_filter(HandshakeFailureLayer::filter());
    tracing_subscriber::registry()
        .with(log)
        .with(failures)
        .init();
}

/// `berth-proxy certs`: the live inventory if the edge answers, else the configured files;
/// then each `--core`'s. A core that cannot be asked fails the command after the rest is shown.
fn print_certs(config: &ProxyConfig, json: bool, cores: &[SocketAddr]) -> anyhow::Result<()> {
    use berth_proxy::inventory::{fetch_live, table, Served};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let live = config.metrics.and_then(|addr| {
        rt.block_on(fetch_live(addr))
            .map_err(|e| eprintln!("berth-proxy: {e}; reading the configured files instead"))
            .ok()
    });
    let edge = match live {
        Some(e) => e,
        None => load_certs(config, false)?
            .iter()
            .flat_map(|r| r.inventory())
            .collect(),
    };
    let mut core_docs = Vec::new();
    let mut unreachable = Vec::new();
    for &addr in cores {
        match rt.block_on(fetch_live(addr)) {
            Ok(entries) => core_docs.push((addr, entries)),
            Err(e) => unreachable.push(e.to_string()),
        }
    }
    if json {
        let cores: Vec<_> = core_docs
            .iter()
            .map(|(a, e)| serde_json::json!({ "address": a.to_string(), "certificates": e }))
            .collect();
        let doc = serde_json::json!({ "certificates": edge, "cores": cores });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        let mut served = vec![Served {
            process: "edge".into(),
            entries: edge,
        }];
        served.extend(core_docs.into_iter().map(|(a, entries)| Served {
            process: format!("core {a}"),
            entries,
        }));
        print!("{}", table(&served));
    }
    if !unreachable.is_empty() {
        bail!("core inventory: {}", unreachable.join("; "));
    }
    Ok(())
}

/// `berth-proxy renew`: leaves a renewal request in the listener's ACME state.
fn request_renewal(config: &ProxyConfig, listener: &str) -> anyhow::Result<()> {
    let Some(l) = config.listeners.iter().find(|l| l.name == listener) else {
        let names: Vec<_> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        bail!(
            "no listener named {listener:?} (listeners: {})",
            names.join(", ")
        );
    };
    if l.acme.is_none() {
        bail!(
            "listener {listener:?} has no tls.acme: its certificate comes from files, \
             replace them to renew (the edge reloads them)"
        );
    }
    Store::new(&config.state_dir, &l.name)
        .request_renewal()
        .with_context(|| format!("listener {listener}: writing the renewal request"))?;
    println!(
        "renewal requested for listener {listener}: the running edge orders within {} s \
         (watch `berth-proxy certs`)",
        berth_proxy::acme::WAKE.as_secs()
    );
    Ok(())
}

/// The development certificate for listeners without `tls`, made once under the state dir.
fn dev_cert(config: &ProxyConfig) -> anyhow::Result<CertFiles> {
    let dir = config.state_dir.join("certs");
    let mut names = vec!["localhost".to_owned()];
    names.extend(config.dev_cert_names.iter().cloned());
    let ips: Vec<IpAddr> = vec!["127.0.0.1".parse()?, "::1".parse()?];
    let dev = berth_certs::ensure_dev(&dir, &names, &ips)
        .with_context(|| format!("generating development certificates in {}", dir.display()))?;
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
    l: &berth_proxy::config::ListenerConfig,
    acme: &berth_proxy::config::AcmeSettings,
    serving: bool,
) -> anyhow::Result<Option<(CertFiles, CertSource)>> {
    let store = Store::new(&config.state_dir, &l.name);
    let issued = if serving {
        let issued = store
            .prepare(acme)
            .with_context(|| format!("listener {}: preparing ACME state", l.name))?;
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
pub(crate) fn load_certs(
    config: &ProxyConfig,
    serving: bool,
) -> anyhow::Result<Vec<Arc<Resolver>>> {
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
        let r = Resolver::load(&l.name, files, l.sni.clone())
            .with_context(|| format!("listener {} ({})", l.name, l.listen))?
            .with_source(source);
        out.push(Arc::new(r));
    }
    Ok(out)
}

/// ACME: one issuance task per ACME listener, the port-80 listeners HTTP-01 needs, and the
/// TLS-ALPN-01 answering in the pre-TLS hook. Returns that hook.
fn acme_services(
    server: &mut Server,
    config: &ProxyConfig,
    resolvers: &[Arc<Resolver>],
) -> anyhow::Result<PlainHttpRefusal> {
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
        let http = AcmeHttp::new(acme.ca_file.as_deref())
            .with_context(|| format!("listener {}: tls.acme.ca_file", l.name))?;
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
        if let Err(e) = TcpListener::bind(addr) {
            bail!("tls.acme.http_listen: cannot listen on {addr} for HTTP-01 challenges: {e}");
        }
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
) -> anyhow::Result<pingora::services::listening::Service<pingora::proxy::HttpProxy<Edge>>> {
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
        let mut tls = TlsSettings::with_callbacks(Box::new(counter))
            .map_err(|e| anyhow::anyhow!("listener {}: {e}", l.name))?;
        tls.set_cert_resolver(resolver.clone());
        tls.enable_h2();
        svc.add_tls_with_settings(&l.listen.to_string(), None, tls);
        tracing::info!(listener = %l.name, listen = %l.listen, upstreams = ?l.upstreams, "listener configured");
    }
    Ok(svc)
}

fn serve(config: ProxyConfig, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    // Pingora binds inside its service threads and a failure there does not stop the process;
    // check every port here so a busy one fails start-up with the listener's name.
    for l in &config.listeners {
        if let Err(e) = TcpListener::bind(l.listen) {
            bail!("listener {}: cannot listen on {}: {e}", l.name, l.listen);
        }
    }
    if let Some(m) = config.metrics {
        if let Err(e) = TcpListener::bind(m) {
            bail!("metrics.listen: cannot listen on {m}: {e}");
        }
    }
    let resolvers = load_certs(&config, true)?;
    let routes = Arc::new(Routes::new(&config).context("building upstream pools")?);
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state dir {}", config.state_dir.display()))?;

    let conf = ServerConf {
        threads: config.threads,
        // The grace period is the drain deadline; DrainSignal exits earlier once idle.
        grace_period_seconds: Some(config.drain.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: config.state_dir.join("upgrade.sock").display().to_string(),
        pid_file: config
            .state_dir
            .join("berth-proxy.pid")
            .display()
            .to_string(),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let in_flight = InFlight::default();
    let pre_tls = acme_services(&mut server, &config, &resolvers)?;
    let svc = edge_service(&server, &config, &routes, &resolvers, &in_flight, pre_tls)?;
    server.add_service(svc);
    let state = Arc::new(EdgeState { routes, resolvers });
    let mut listeners: Vec<(String, std::net::SocketAddr)> = config
        .listeners
        .iter()
        .map(|l| (l.name.clone(), l.listen))
        .collect();
    if let Some(addr) = config.metrics {
        let app = MetricsApp {
            state: state.clone(),
        };
        let mut metrics =
            pingora::services::listening::Service::new("berth-edge-metrics".to_owned(), app);
        metrics.add_tcp(&addr.to_string());
        metrics.threads = Some(1);
        server.add_service(metrics);
        listeners.push(("metrics".to_owned(), addr));
        tracing::info!(listen = %addr, "metrics listener configured");
    }
    let maintenance = Maintenance {
        state,
        metrics: config.metrics.is_some(),
        interval: config.health_check_interval,
        ready_file,
        listeners,
    };
    server.add_service(background_service("berth-edge-maintenance", maintenance));
    server.run(RunArgs {
        shutdown_signal: Box::new(DrainSignal {
            in_flight,
            deadline: config.drain,
        }),
    });
    berth_proxy::lifecycle::flush_logs();
    Ok(())
}
