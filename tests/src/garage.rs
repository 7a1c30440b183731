//! A throwaway Garage node (Garage 2.x, an S3 server with real multipart uploads and speed to
//! match): the server the scale-out benchmark records its figures on, because CNCF
//! Distribution's s3 driver needs ListMultipartUploads, which s3s-fs lacks. Not needed by the
//! tests, so `.ci/run` does not build it (16 minutes): `cargo install garage --version 2.5.0
//! --locked --root ~/.cache/berth-tools/garage`, or point `BERTH_GARAGE` at a binary.
//! One node, one bucket (`berth`), killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::edge::free_port;
use crate::http::request;

pub const ACCESS_KEY: &str = "GKberthbench0001";
pub const SECRET_KEY: &str = "berthbenchsecret0123456789abcdef";
/// Garage answers only for the region it is configured with.
pub const REGION: &str = "garage";

/// A running single-node Garage.
pub struct Garage {
    child: Child,
    dir: TempDir,
    /// `http://127.0.0.1:PORT` (the S3 API).
    pub endpoint: String,
}

/// The binary: `BERTH_GARAGE`, or where the module docs install it.
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("BERTH_GARAGE") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/berth-tools/garage/bin/garage")
}

impl Garage {
    /// Starts a node with an empty bucket; waits until its admin API reports healthy.
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let secret = hex::encode(rand_bytes());
        // LMDB, Garage's default: on SQLite its background workers hit "database is locked"
        // under four parallel pushes and requests stalled for good.
        let config = format!(
            "metadata_dir = \"{0}/meta\"\ndata_dir = \"{0}/data\"\ndb_engine = \"lmdb\"\n\
             replication_factor = 1\nrpc_bind_addr = \"127.0.0.1:{rpc}\"\n\
             rpc_public_addr = \"127.0.0.1:{rpc}\"\nrpc_secret = \"{secret}\"\n\
             [s3_api]\ns3_region = \"{REGION}\"\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
             [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\n",
            dir.path().display()
        );
        let path = dir.path().join("garage.toml");
        std::fs::write(&path, config).expect("garage.toml");
        let log = std::fs::File::create(dir.path().join("garage.log")).expect("log");
        let bin = binary();
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&path)
            .args(["server", "--single-node", "--default-bucket"])
            .env("GARAGE_DEFAULT_ACCESS_KEY", ACCESS_KEY)
            .env("GARAGE_DEFAULT_SECRET_KEY", SECRET_KEY)
            .env("GARAGE_DEFAULT_BUCKET", "berth")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (see tests/src/garage.rs)", bin.display()));
        let health = format!("127.0.0.1:{admin}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !request(&health, "GET", "/health", &[], b"").is_ok_and(|r| r.status == 200) {
            assert!(child.try_wait().ok().flatten().is_none(), "garage exited");
            assert!(Instant::now() < deadline, "garage did not become healthy");
            std::thread::sleep(Duration::from_millis(50));
        }
        Garage {
            child,
            dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `storage.blobs.s3` for a core: Garage ignores `If-None-Match`, so no conditional puts.
    pub fn berth_config(&self, prefix: &str) -> String {
        self.berth_config_with(prefix, "")
    }

    /// [`Garage::berth_config`] with more keys (`", redirect: true"`).
    pub fn berth_config_with(&self, prefix: &str, more: &str) -> String {
        let secret = self.dir.path().join("secret");
        std::fs::write(&secret, SECRET_KEY).expect("secret file");
        format!(
            "{{ s3: {{ bucket: berth, endpoint: \"{}\", region: {REGION}, prefix: \"{prefix}\", \
             access_key_id: {ACCESS_KEY}, secret_access_key_file: {}, \
             conditional_put: false{more} }} }}",
            self.endpoint,
            secret.display()
        )
    }

    /// `storage:` of a Distribution 2.8 config (its s3 driver; path style from the endpoint).
    pub fn distribution_config(&self, prefix: &str) -> String {
        format!(
            "storage:\n  s3:\n    accesskey: {ACCESS_KEY}\n    secretkey: {SECRET_KEY}\n    \
             region: {REGION}\n    regionendpoint: {}\n    bucket: berth\n    \
             rootdirectory: /{prefix}\n    secure: false\n  delete:\n    enabled: true\n",
            self.endpoint
        )
    }
}

fn rand_bytes() -> [u8; 32] {
    // No rand dependency here: the clock and the pid are unique enough for a throwaway node.
    use sha2::Digest as _;
    let seed = format!("{:?}{}", Instant::now(), std::process::id());
    sha2::Sha256::digest(seed.as_bytes()).into()
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
