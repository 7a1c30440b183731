//! `berth-core`: the registry core binary. `anyhow` lives here and nowhere else.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

use berth_core::auth::password::hash;
use berth_core::config::Config;
use berth_core::process;

#[derive(Parser)]
#[command(name = "berth-core", version, about = "Berth registry core")]
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
    /// Make a new key sign registry tokens on every core of the configured metadata store (a
    /// fresh one, or the new content of `auth.token_key_file`); the previous key is accepted
    /// for one token lifetime, so nobody is logged out.
    RotateKey {
        /// The YAML configuration.
        #[arg(long)]
        config: PathBuf,
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
    let rt = || process::runtime().context("starting the async runtime");
    match Command::parse() {
        Command::CheckConfig { config } => {
            let c = Config::load(&config)?;
            let (n, port) = (c.repositories.len(), c.main.listen);
            println!(
                "{}: ok ({n} repositories, main port {port})",
                config.display()
            );
        }
        Command::HashPassword => {
            let mut password = String::new();
            std::io::stdin()
                .read_line(&mut password)
                .context("reading the password")?;
            let password = password.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "empty password");
            println!("{}", hash(password).map_err(anyhow::Error::msg)?);
        }
        Command::Migrate { config } => {
            let config = Config::load(&config)?;
            println!("{}", rt()?.block_on(process::migrate(&config))?);
        }
        Command::RotateKey { config } => {
            let config = Config::load(&config)?;
            println!("{}", rt()?.block_on(process::rotate_key(&config))?);
        }
        Command::Gc {
            config,
            dry_run,
            json,
        } => {
            process::init_logging();
            let config = Config::load(&config)?;
            let report = rt()?.block_on(process::collect(&config, dry_run))?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&report)?),
                false => report.lines().iter().for_each(|l| println!("{l}")),
            }
        }
        Command::Serve { config, ready_file } => {
            process::init_logging();
            let config = Config::load(&config)?;
            let shutdown = process::shutdown_signal();
            rt()?.block_on(process::serve(config, ready_file.as_deref(), shutdown))?;
        }
    }
    Ok(())
}
