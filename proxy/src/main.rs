//! `berth-proxy`: the HTTPS edge. `anyhow` lives here only; the edge itself is
//! [`berth_proxy::run`], which a test can start in process on port 0.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use berth_proxy::commands;
use berth_proxy::config::ProxyConfig;
use berth_proxy::run::{run, Listeners, Shutdown};
use berth_proxy::tls_observe::HandshakeFailureLayer;

#[derive(Parser)]
#[command(name = "berth-proxy", version, about = "Berth HTTPS edge")]
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
    match Command::parse() {
        Command::CheckConfig { config } => {
            let ok = commands::check_config(&ProxyConfig::load(&config)?)?;
            println!("{}: {ok}", config.display());
        }
        Command::Certs {
            config,
            json,
            cores,
        } => commands::certs(&ProxyConfig::load(&config)?, json, &cores)?,
        Command::Renew { config, listener } => {
            let done = commands::renew(&ProxyConfig::load(&config)?, &listener)?;
            println!("{done}");
        }
        Command::Serve { config, ready_file } => {
            init_logging();
            let mut config = ProxyConfig::load(&config)?;
            let listeners = Listeners::reserve(&mut config)?;
            run(config, listeners, Shutdown::Signals, ready_file)?;
        }
    }
    Ok(())
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
