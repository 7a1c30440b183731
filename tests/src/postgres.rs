//! A throwaway PostgreSQL server (Debian's `postgresql` package): `initdb` and `pg_ctl` as the
//! `postgres` user on a private directory and a loopback port, stopped and removed on drop.
//! initdb refuses to run as root, hence `runuser`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use tempfile::TempDir;

use crate::edge::free_port;
use crate::tools::run;

/// A running PostgreSQL with one database, `berth`.
pub struct Postgres {
    dir: TempDir,
    bin: PathBuf,
    pub port: u16,
    /// `postgres://postgres@127.0.0.1:PORT/berth` (trust authentication on loopback).
    pub url: String,
}

/// The newest installed server's `bin` directory.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (Debian package postgresql)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no PostgreSQL server binaries")
}

fn as_postgres(bin: &std::path::Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        run(Command::new("chown").arg("postgres:").arg(dir.path()));
        let data = dir.path().join("data");
        run(as_postgres(&bin, "initdb")
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
            .args(["--locale=C.UTF-8"]));
        let port = free_port();
        let pg = Postgres {
            url: format!("postgres://postgres@127.0.0.1:{port}/berth"),
            dir,
            bin,
            port,
        };
        pg.resume();
        run(Command::new(pg.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-c", "CREATE DATABASE berth"]));
        pg
    }

    /// Starts the server (again, after [`Postgres::stop`]) on the same port and data.
    pub fn resume(&self) {
        run(as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .args(["-w", "start", "-o"])
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off",
                self.port,
                self.dir.path().display()
            )));
    }

    /// Stops the server at once, as a crash or a failover would, keeping its data.
    pub fn stop(&self) {
        run(as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"]));
    }

    /// The postmaster's pid (its backends are its children), from `postmaster.pid`.
    pub fn pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid"))
            .expect("postmaster.pid");
        text.lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .expect("pid")
    }

    /// A new empty database on the same server; returns its URL.
    pub fn database(&self, name: &str) -> String {
        run(Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-c", &format!("CREATE DATABASE {name}")]));
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bin, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
