//! A throwaway S3 server: `s3s-fs` (crates.io, installed by `.ci/run` under
//! `~/.cache/berth-tools/s3s-fs`), which enforces what AWS does and Garage does not (5 MiB
//! minimum parts, `If-None-Match` on PUT). A bucket is a directory under its root; the server
//! is killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::edge::free_port;

pub const ACCESS_KEY: &str = "berthtestkey";
pub const SECRET_KEY: &str = "berthtestsecret0123456789";

/// A running s3s-fs with one bucket, `berth`.
pub struct S3Server {
    child: Child,
    dir: TempDir,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// Where `.ci/run` installs s3s-fs (or `BERTH_S3S_FS`).
fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_S3S_FS") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/berth-tools/s3s-fs/bin/s3s-fs")
}

/// Starts s3s-fs on `port` over `dir` and waits until it accepts connections.
fn spawn(dir: &TempDir, port: u16) -> Child {
    let bin = binary();
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (cargo install s3s-fs --version 0.14.1 --features binary --locked --root ~/.cache/berth-tools/s3s-fs)",
                bin.display()
            )
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

impl S3Server {
    pub fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("berth")).expect("bucket directory");
        let port = free_port();
        let child = spawn(&dir, port);
        S3Server {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Kills the server, as an outage would; the bucket's files stay.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and bucket, after [`S3Server::stop`].
    pub fn resume(&mut self) {
        let port: u16 = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        self.child = spawn(&self.dir, port);
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The bucket's directory, to look at what really got stored.
    pub fn bucket_dir(&self) -> PathBuf {
        self.dir.path().join("berth")
    }

    /// `storage.blobs.s3` for a core's config, one line of YAML flow style (the secret in a
    /// file, as an operator would keep it).
    pub fn config(&self, prefix: &str) -> String {
        self.config_with(prefix, "")
    }

    /// [`S3Server::config`] with more keys of `storage.blobs.s3` (`", redirect: true"`).
    pub fn config_with(&self, prefix: &str, more: &str) -> String {
        let secret = self.dir.path().join("secret");
        std::fs::write(&secret, format!("{SECRET_KEY}\n")).expect("secret file");
        format!(
            "{{ s3: {{ bucket: berth, endpoint: \"{}\", region: us-east-1, prefix: \"{prefix}\", \
             access_key_id: {ACCESS_KEY}, secret_access_key_file: {}{more} }} }}",
            self.endpoint,
            secret.display()
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
