//! The edge's one-shot commands besides `serve`: `check-config`, `certs` (the inventory of
//! every certificate the deployment serves) and `renew` (an ACME order now). Each prints what
//! an operator reads and returns a typed error; `main.rs` only dispatches.

use std::net::SocketAddr;

use crate::acme::{Store, StoreError};
use crate::config::ProxyConfig;
use crate::inventory::{fetch_live, table, Served};
use crate::start::{load_certs, StartError};

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("core inventory: {0}")]
    Cores(String),
    #[error("no listener named {name:?} (listeners: {known})")]
    NoListener { name: String, known: String },
    #[error(
        "listener {0:?} has no tls.acme: its certificate comes from files, replace them to \
         renew (the edge reloads them)"
    )]
    NotAcme(String),
    #[error("listener {listener}: writing the renewal request: {source}")]
    Renewal {
        listener: String,
        source: StoreError,
    },
}

/// `check-config`: the file parses and every certificate it names loads.
pub fn check_config(config: &ProxyConfig) -> Result<String, CommandError> {
    let resolvers = load_certs(config, false)?;
    Ok(format!(
        "ok ({} listeners, {} certificate sets)",
        config.listeners.len(),
        resolvers.len()
    ))
}

/// `certs`: the live inventory if the edge answers, else the configured files; then each
/// `--core`'s. A core that cannot be asked fails the command after the rest is printed.
pub fn certs(config: &ProxyConfig, json: bool, cores: &[SocketAddr]) -> Result<(), CommandError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CommandError::Runtime)?;
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
        println!("{doc:#}");
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
    match unreachable.is_empty() {
        true => Ok(()),
        false => Err(CommandError::Cores(unreachable.join("; "))),
    }
}

/// `renew`: leaves a renewal request in the listener's ACME state; says when it is acted on.
pub fn renew(config: &ProxyConfig, listener: &str) -> Result<String, CommandError> {
    let Some(l) = config.listeners.iter().find(|l| l.name == listener) else {
        let names: Vec<_> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        return Err(CommandError::NoListener {
            name: listener.to_owned(),
            known: names.join(", "),
        });
    };
    if l.acme.is_none() {
        return Err(CommandError::NotAcme(listener.to_owned()));
    }
    Store::new(&config.state_dir, &l.name)
        .request_renewal()
        .map_err(|source| CommandError::Renewal {
            listener: listener.to_owned(),
            source,
        })?;
    Ok(format!(
        "renewal requested for listener {listener}: the running edge orders within {} s \
         (watch `berth-proxy certs`)",
        crate::acme::WAKE.as_secs()
    ))
}
