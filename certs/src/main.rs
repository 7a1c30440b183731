//! `berth-certs`: make a CA, issue server certificates, install trust, inspect certificates.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

use berth_certs::{
    describe, docker_trust, issue, make_ca, write_private, write_public, CA_DAYS, LEAF_DAYS,
};

#[derive(Parser)]
#[command(
    name = "berth-certs",
    version,
    about = "Certificates for a private registry CA"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a CA: DIR/ca.crt and DIR/ca.key (mode 0600).
    Ca {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "Berth registry CA")]
        name: String,
        #[arg(long, default_value_t = CA_DAYS)]
        days: i64,
    },
    /// Issue a server certificate signed by the CA in --ca: OUT/server.crt, OUT/server.key.
    Issue {
        /// Directory holding ca.crt and ca.key.
        #[arg(long)]
        ca: PathBuf,
        /// A DNS name for the certificate (repeatable).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// An IP address for the certificate (repeatable).
        #[arg(long = "ip")]
        ips: Vec<IpAddr>,
        #[arg(long)]
        out: PathBuf,
        /// File name stem: OUT/<name>.crt and OUT/<name>.key.
        #[arg(long, default_value = "server")]
        name: String,
        #[arg(long, default_value_t = LEAF_DAYS)]
        days: i64,
    },
    /// Install the CA for HOST:PORT where docker and podman look for it.
    DockerTrust {
        /// The registry as clients name it, e.g. registry.example:5443.
        host_port: String,
        /// Directory holding ca.crt.
        #[arg(long)]
        ca: PathBuf,
        /// Filesystem root to install under (for tests and images).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Print a certificate's subject, SANs and expiry.
    Show { file: PathBuf },
}

fn read(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ca { out, name, days } => {
            let ca = make_ca(&name, days)?;
            write_public(&out.join("ca.crt"), &ca.cert_pem)?;
            write_private(&out.join("ca.key"), &ca.key_pem)?;
            println!("wrote {0}/ca.crt and {0}/ca.key", out.display());
        }
        Command::Issue {
            ca,
            hosts,
            ips,
            out,
            name,
            days,
        } => {
            let leaf = issue(
                &read(&ca.join("ca.crt"))?,
                &read(&ca.join("ca.key"))?,
                &hosts,
                &ips,
                days,
            )?;
            let (crt, key) = (
                out.join(format!("{name}.crt")),
                out.join(format!("{name}.key")),
            );
            write_public(&crt, &leaf.cert_pem)?;
            write_private(&key, &leaf.key_pem)?;
            println!("wrote {} and {}", crt.display(), key.display());
        }
        Command::DockerTrust {
            host_port,
            ca,
            root,
        } => {
            if !host_port.contains(':') {
                anyhow::bail!("{host_port}: give HOST:PORT exactly as clients use it");
            }
            for t in docker_trust(&host_port, &read(&ca.join("ca.crt"))?, &root)? {
                println!("{}: {}", t.client, t.path.display());
            }
        }
        Command::Show { file } => {
            let info = describe(&read(&file)?).with_context(|| format!("{}", file.display()))?;
            println!("subject:    {}", info.subject);
            println!("issuer:     {}", info.issuer);
            println!("SANs:       {}", info.sans.join(", "));
            println!("not before: {}", info.not_before);
            println!(
                "not after:  {} ({} days left)",
                info.not_after, info.days_left
            );
            println!("CA:         {}", info.is_ca);
        }
    }
    Ok(())
}
