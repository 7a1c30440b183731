//! A `berth-core` process with its own config and data directory.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a core may take to write its ready file.
const READY_DEADLINE: Duration = Duration::from_secs(20);

/// A running core. Killed (SIGKILL) on drop; its directory is removed with it.
pub struct Core {
    pub dir: TempDir,
    /// The `berth-core` executable this process runs (another build for benchmarks).
    binary: PathBuf,
    child: Option<Child>,
    pub main: String,
    /// `metrics.listen`'s address, if the config has one.
    pub metrics: Option<String>,
    pub connectors: BTreeMap<String, String>,
    pub https_connectors: BTreeMap<String, String>,
}

/// `berth-core check-config PATH`: what it printed and how it ended.
pub fn check_config(path: impl AsRef<std::ffi::OsStr>) -> std::process::Output {
    Command::new(crate::bin("berth-core"))
        .arg("check-config")
        .arg(path)
        .output()
        .expect("berth-core check-config")
}

/// Asserts `check-config` refuses a config of `rest` (the YAML after `storage` and `main`),
/// naming `key` in its error.
pub fn assert_refused(rest: &str, key: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("core.yaml");
    let text = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n{rest}",
        dir.path().join("data").display()
    );
    fs::write(&path, text).expect("config");
    let out = check_config(&path);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains(key), "{key}: {said}");
}

/// An argon2 hash of `password` for a config file, from `berth-core hash-password`.
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(crate::bin("berth-core"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("berth-core hash-password");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    let out = child.wait_with_output().expect("hash-password output");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A config with access control: `root` (password `root_password`) administers, and one
/// hosted repository named `hosted` has a connector; all on port 0, context path `/berth`.
pub fn secured_config(data: &Path, root_password: &str) -> String {
    format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         auth:\n  users:\n    - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20 roles:\n    - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display(),
        hash_password(root_password),
    )
}

/// One hosted repository named `hosted` with a connector, all on port 0.
pub fn default_config(data: &Path) -> String {
    format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display()
    )
}

/// One hosted repository named `hosted` on the given stores: `metadata` is a value for
/// `storage.metadata` (empty: SQLite under `data`), `blobs` one for `storage.blobs`.
pub fn stores_config(data: &Path, metadata: &str, blobs: &str) -> String {
    let metadata = if metadata.is_empty() {
        String::new()
    } else {
        format!("  metadata: {metadata}\n")
    };
    format!(
        "storage:\n  root: {}\n{metadata}  blobs: {blobs}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display()
    )
}

impl Core {
    /// Starts a core with the default config.
    pub fn start() -> Core {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = default_config(&dir.path().join("data"));
        Core::start_in(dir, &config)
    }

    /// Starts a core in `dir` with `config`.
    pub fn start_in(dir: TempDir, config: &str) -> Core {
        Core::start_binary(crate::bin("berth-core"), dir, config)
    }

    /// Starts `binary` (e.g. an older release, as a benchmark's reference) in `dir`.
    pub fn start_binary(binary: PathBuf, dir: TempDir, config: &str) -> Core {
        fs::write(dir.path().join("core.yaml"), config).expect("write config");
        let mut core = Core {
            binary,
            dir,
            child: None,
            main: String::new(),
            metrics: None,
            connectors: BTreeMap::new(),
            https_connectors: BTreeMap::new(),
        };
        core.spawn()
            .unwrap_or_else(|e| panic!("core did not start: {e}"));
        core
    }

    fn ready_path(&self) -> PathBuf {
        self.dir.path().join("ready.json")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("core.yaml")
    }

    /// Spawns the process and waits for its ready file; returns stderr text on failure.
    pub fn spawn(&mut self) -> Result<(), String> {
        let _ = fs::remove_file(self.ready_path());
        let log = fs::File::create(self.dir.path().join("core.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .arg("--ready-file")
            .arg(self.ready_path())
            .env("RUST_LOG", "warn,berth_core::audit=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Ok(text) = fs::read_to_string(self.ready_path()) {
                let v: serde_json::Value =
                    serde_json::from_str(&text).map_err(|e| e.to_string())?;
                self.main = v["main"].as_str().unwrap_or_default().to_owned();
                self.metrics = v["metrics"].as_str().map(str::to_owned);
                let map = |key: &str| -> BTreeMap<String, String> {
                    v[key]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(k, v)| {
                                    (k.clone(), v.as_str().unwrap_or_default().to_owned())
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                };
                self.connectors = map("connectors");
                self.https_connectors = map("https_connectors");
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!("exited with {status}: {}", self.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no ready file after {READY_DEADLINE:?}: {}",
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The connector address of `repo`.
    pub fn connector(&self, repo: &str) -> &str {
        self.connectors
            .get(repo)
            .map(String::as_str)
            .expect("connector")
    }

    /// What the process wrote to stderr.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("core.log")).unwrap_or_default()
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same config and data, rewriting the config to pin the ports it had
    /// (so clients' URLs stay valid).
    pub fn restart_same_ports(&mut self) {
        self.kill9();
        let mut config = fs::read_to_string(self.config_path()).expect("config");
        config = config.replacen("127.0.0.1:0", &self.main.clone(), 1);
        for addr in self.connectors.values() {
            config = config.replacen("127.0.0.1:0", addr, 1);
        }
        fs::write(self.config_path(), config).expect("rewrite config");
        self.spawn()
            .unwrap_or_else(|e| panic!("core did not restart: {e}"));
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...).
    pub fn signal(&self, name: &str) {
        if let Some(pid) = self.pid() {
            crate::tools::run(
                Command::new("kill")
                    .arg(format!("-{name}"))
                    .arg(pid.to_string()),
            );
        }
    }

    /// Waits for the process to exit, up to `limit`; returns its status if it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.kill9();
    }
}
