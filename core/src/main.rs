//! `berth-core`: the registry core binary. `anyhow` lives here and nowhere else.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use berth_core::config::Config;
use berth_core::server;
use berth_core::storage::Stores;

#[derive(Parser)]
#[command(name = "berth-core", version, about = "Berth registry core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the repositories of a configuration file.
    Serve {
        /// The YAML configuration (see deploy/core.yaml).
        #[arg(long)]
        config: PathBuf,
        /// Write the bound addresses as JSON here once listening.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Validate a configuration file without starting.
    CheckConfig {
        /// The YAML configuration.
        config: PathBuf,
    },
    /// Print an argon2id hash of a password (read from standard input) for `auth.users`.
    HashPassword,
    /// Run one garbage collection against the configured stores (safe while a server runs on
    /// them) and print what it removed.
    Gc {
        /// The YAML configuration.
        #[arg(long)]
        config: PathBuf,
        /// Only list what would be removed and the bytes it would free.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Open the configured stores, apply metadata schema migrations and import the filesystem
    /// metadata of an older release (what `serve` does on its first start), then exit.
    Migrate {
        /// The YAML configuration.
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            println!(
                "{}: ok ({} repositories, main port {})",
                config.display(),
                c.repositories.len(),
                c.main.listen
            );
            Ok(())
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password from standard input")?;
            let password = password.trim_end_matches(['\n', '\r']);
            if password.is_empty() {
                anyhow::bail!("empty password");
            }
            println!(
                "{}",
                berth_core::auth::password::hash(password).map_err(anyhow::Error::msg)?
            );
            Ok(())
        }
        Command::Migrate { config } => {
            let config = Config::load(&config)?;
            let root = config.storage.root.clone();
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?
                .block_on(async move {
                    let legacy = root.join("repositories").is_dir();
                    Stores::open(&config.storage)
                        .await
                        .with_context(|| format!("opening storage at {}", root.display()))?;
                    let what = if legacy {
                        "schema up to date; filesystem metadata imported (old copy kept as repositories.imported)"
                    } else {
                        "schema up to date; nothing to import"
                    };
                    println!("{}: {what}", root.display());
                    anyhow::Ok(())
                })
        }
        Command::Gc {
            config,
            dry_run,
            json,
        } => {
            init_logging();
            let config = Config::load(&config)?;
            runtime()?.block_on(gc(config, dry_run, json))
        }
        Command::Serve { config, ready_file } => {
            init_logging();
            let config = Config::load(&config)?;
            runtime()?.block_on(serve(config, ready_file))
        }
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn gc(config: Config, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let stores = Stores::open(&config.storage)
        .await
        .with_context(|| format!("opening storage at {}", config.storage.root.display()))?;
    let report = berth_core::lifecycle::gc::collect(&stores, &config.gc, dry_run)
        .await
        .context(
            "garbage collection stopped (what it removed so far is consistent; run it again)",
        )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let verb = if dry_run { "would remove" } else { "removed" };
    if let Some(p) = &report.preview {
        for m in &p.manifests {
            println!("{verb} deleted manifest {m}");
        }
        for l in &p.links {
            println!("{verb} blob link {l}");
        }
        for (d, size) in &p.blobs {
            println!("{verb} blob {d} ({size} bytes)");
        }
        if p.truncated {
            println!(
                "(lists cut at {} entries each; totals below are complete)",
                p.blobs.len().max(p.links.len()).max(p.manifests.len())
            );
        }
    }
    println!(
        "{verb} {} manifests, {} blob links, {} blobs: {} bytes freed{} ({} ms)",
        report.manifests_removed,
        report.links_removed,
        report.blobs_removed,
        report.bytes_freed,
        if dry_run { " (dry run)" } else { "" },
        report.millis
    );
    Ok(())
}

async fn serve(config: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    let stores = Stores::open(&config.storage)
        .await
        .with_context(|| format!("opening storage at {}", config.storage.root.display()))?;
    let (config, control) = berth_core::registry::Control::start(config, stores.clone())
        .await
        .context("applying the settings changed at run time to the config file's")?;
    let registry = Arc::new(berth_core::registry::registry(&config, &stores, control)?);
    registry
        .control
        .apply_directory(&registry)
        .await
        .context("loading the users, roles and tokens changed at run time")?;
    let bound = server::bind(&config).await?;
    tracing::info!(addresses = %bound.addresses(), "listening");
    if let Some(path) = &ready_file {
        server::write_ready_file(path, &bound)?;
    }
    server::run(
        registry,
        bound,
        stores,
        config.limits.clone(),
        shutdown_signal(),
    )
    .await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
