//! One core process, start to end: the stores opened, the service layer built over them with
//! the settings changed at run time, every socket bound (a busy port fails start-up naming
//! who wanted it), served until `shutdown`. The binary's `main.rs` only parses the command
//! line and calls these; a test or an embedding program can call them the same way.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::lifecycle::gc::{self, GcError, GcReport};
use crate::lifecycle::{self, lease, LeaseError, GC_LEASE};
use crate::registry::control::ChangeError;
use crate::registry::{self, BuildError, Control};
use crate::server::{self, ServeError};
use crate::storage::{OpenError, Stores};

/// Why a core could not start (or a one-off command could not run); each names the step.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("opening storage at {}: {source}", root.display())]
    Storage { root: PathBuf, source: OpenError },
    #[error("applying the settings changed at run time to the config file's: {0}")]
    Settings(ChangeError),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("loading the users, roles and tokens changed at run time: {0}")]
    Directory(ChangeError),
    #[error("{0}")]
    Serve(#[from] ServeError),
    #[error(
        "garbage collection stopped (what it removed so far is consistent; run it again): {0}"
    )]
    Gc(#[from] GcError),
    #[error("garbage collection did not run: {0}")]
    Lease(#[from] LeaseError),
    #[error("rotating the registry token key: {0}")]
    Keys(#[from] crate::auth::KeyError),
    #[error("{0} has no auth section: no registry tokens are signed, so there is no key")]
    NoAuth(String),
}

async fn open(config: &Config) -> Result<Stores, StartError> {
    Stores::open(&config.storage)
        .await
        .map_err(|source| StartError::Storage {
            root: config.storage.root.clone(),
            source,
        })
}

/// Serves `config` until `shutdown` resolves, then drains; writes the bound addresses as JSON
/// to `ready_file` once listening.
pub async fn serve(
    config: Config,
    ready_file: Option<&Path>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let stores = open(&config).await?;
    let (config, control) = Control::start(config, stores.clone())
        .await
        .map_err(StartError::Settings)?;
    let registry = Arc::new(registry::registry(&config, &stores, control).await?);
    registry
        .control
        .apply_directory(&registry)
        .await
        .map_err(StartError::Directory)?;
    let bound = server::bind(&config).await?;
    tracing::info!(addresses = %bound.addresses(), "listening");
    if let Some(path) = ready_file {
        server::write_ready_file(path, &bound)?;
    }
    server::run(registry, bound, stores, config.limits.clone(), shutdown).await;
    Ok(())
}

/// Opens the stores (applying schema migrations and importing an older release's filesystem
/// metadata, as `serve` does on its first start); says what it did.
pub async fn migrate(config: &Config) -> Result<String, StartError> {
    let root = &config.storage.root;
    let legacy = root.join("repositories").is_dir();
    open(config).await?;
    let what = if legacy {
        "schema up to date; filesystem metadata imported (old copy kept as repositories.imported)"
    } else {
        "schema up to date; nothing to import"
    };
    Ok(format!("{}: {what}", root.display()))
}

/// One garbage collection over the configured stores (safe while cores serve them).
pub async fn collect(config: &Config, dry_run: bool) -> Result<GcReport, StartError> {
    let stores = open(config).await?;
    let me = format!("berth-core gc/{}", std::process::id());
    let work = gc::collect(&stores, &config.gc, dry_run);
    let report = match dry_run {
        true => work.await?,
        false => lease::hold(stores.meta.as_ref(), GC_LEASE, &me, work).await??,
    };
    lifecycle::record(&stores, &me, &report, false)
        .await
        .map_err(GcError::from)?;
    Ok(report)
}

/// Makes a new registry token key current for every core on the configured metadata store
/// (a fresh key, or `auth.token_key_file`'s new content); says what changed.
pub async fn rotate_key(config: &Config) -> Result<String, StartError> {
    use crate::auth::{KeyRing, KeySource};
    let auth = config
        .auth
        .as_ref()
        .ok_or_else(|| StartError::NoAuth(config.source.file.clone()))?;
    let stores = open(config).await?;
    let source = match &auth.token_key_file {
        Some(path) => KeySource::File(path.clone()),
        None => KeySource::Store,
    };
    let (before, after) = KeyRing::rotate(&source, stores.meta.as_ref()).await?;
    let ttl = auth.token_ttl.as_secs();
    Ok(match before {
        Some(b) => format!(
            "registry tokens are now signed with key {after}; tokens signed with {b} are \
             accepted for {ttl} s more; running cores switch within seconds"
        ),
        None => format!("registry tokens are now signed with key {after}"),
    })
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Log lines to standard error, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env();
    tracing_subscriber::fmt()
        .with_env_filter(filter.unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The multi-threaded runtime a core serves on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}
