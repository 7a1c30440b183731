//! A `berth-proxy` process, and certificates made with the real `berth-certs` binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::tools::run;

/// A free TCP port on loopback. Pingora binds its own sockets, so unlike the core the edge
/// cannot be given port 0; [`Edge::start`] retries with new ports if one was taken meanwhile.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Makes a CA in `dir` with `berth-certs ca`.
pub fn make_ca(dir: &Path) {
    run(Command::new(crate::bin("berth-certs"))
        .args(["ca", "--out"])
        .arg(dir));
}

/// Issues `<name>.crt/.key` in `out` with `berth-certs issue`.
pub fn issue(
    ca: &Path,
    out: &Path,
    name: &str,
    hosts: &[&str],
    ips: &[&str],
) -> (PathBuf, PathBuf) {
    let mut c = Command::new(crate::bin("berth-certs"));
    c.args(["issue", "--ca"])
        .arg(ca)
        .arg("--out")
        .arg(out)
        .args(["--name", name]);
    for h in hosts {
        c.args(["--host", h]);
    }
    for i in ips {
        c.args(["--ip", i]);
    }
    run(&mut c);
    (
        out.join(format!("{name}.crt")),
        out.join(format!("{name}.key")),
    )
}

/// An edge in front of several cores, as a scale-out deployment runs one: listener `front`
/// on `ports[0]` with TLS (a certificate for localhost and 127.0.0.1 from a new CA under
/// `pki`) over `upstreams`, health-checked every 200 ms, metrics on `ports[1]`. Returns the
/// edge and a directory holding the CA as `ca.crt` (for `--cert-dir`; curl takes the file).
pub fn front_edge(upstreams: &[&str], pki: &Path) -> (Edge, PathBuf) {
    make_ca(&pki.join("ca"));
    let (cert, key) = issue(
        &pki.join("ca"),
        &pki.join("leaf"),
        "edge",
        &["localhost"],
        &["127.0.0.1"],
    );
    let trust = pki.join("trust");
    fs::create_dir_all(&trust).expect("trust dir");
    fs::copy(pki.join("ca/ca.crt"), trust.join("ca.crt")).expect("copy ca.crt");
    let upstreams = upstreams.join(", ");
    let edge = Edge::start(2, |p| {
        format!(
            "state_dir: ./state\nhealth_check_interval: 200ms\nmetrics: {{ listen: 127.0.0.1:{} }}\n\
             listeners:\n  - name: front\n    listen: 127.0.0.1:{}\n    \
             tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstreams}]\n",
            p[1],
            p[0],
            cert.display(),
            key.display()
        )
    });
    (edge, trust)
}

/// A running edge, killed on drop.
pub struct Edge {
    pub dir: TempDir,
    child: Option<Child>,
    pub ports: Vec<u16>,
}

impl Edge {
    /// Starts an edge whose config is `config(ports)` for `n` fresh ports.
    pub fn start(n: usize, config: impl Fn(&[u16]) -> String) -> Edge {
        let mut last = String::new();
        for _ in 0..5 {
            let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
            let dir = tempfile::tempdir().expect("tempdir");
            match Edge::try_start(dir, ports, &config) {
                Ok(e) => return e,
                Err(e) if e.contains("cannot listen") => last = e,
                Err(e) => panic!("edge did not start: {e}"),
            }
        }
        panic!("edge did not start after retries: {last}");
    }

    /// Starts with a config that may be bad; `Err` carries the process's stderr.
    pub fn try_start(
        dir: TempDir,
        ports: Vec<u16>,
        config: &dyn Fn(&[u16]) -> String,
    ) -> Result<Edge, String> {
        fs::write(dir.path().join("proxy.yaml"), config(&ports)).expect("config");
        let log = fs::File::create(dir.path().join("edge.log")).expect("log");
        let child = Command::new(crate::bin("berth-proxy"))
            .args(["serve", "--config"])
            .arg(dir.path().join("proxy.yaml"))
            .arg("--ready-file")
            .arg(dir.path().join("ready.json"))
            .env("RUST_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut edge = Edge {
            dir,
            child: Some(child),
            ports,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if edge.dir.path().join("ready.json").exists() {
                return Ok(edge);
            }
            if let Some(status) = edge
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                edge.child = None;
                return Err(format!("exited with {status}: {}", edge.log()));
            }
            if Instant::now() > deadline {
                return Err(format!("not ready after 20 s: {}", edge.log()));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }

    /// The log once it contains `needle` (panics with the log after 30 s): for tests that wait
    /// for the edge to have done something, not for time to pass.
    pub fn wait_log(&self, needle: &str) -> String {
        wait_for(|| Some(self.log()).filter(|l| l.contains(needle)))
            .unwrap_or_else(|| panic!("the edge never logged {needle:?}:\n{}", self.log()))
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Sends a signal by name (TERM, HUP, INT) to the edge.
    pub fn signal(&self, name: &str) {
        run(Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string()));
    }

    /// Waits for the process to exit, up to `limit`; returns whether it did.
    pub fn wait_exit(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut() {
                if c.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `curl` with a CA, resolving `name` to `addr_ip` (so SNI and Host carry the name).
pub fn curl(ca: &Path, name: &str, ip: &str, port: u16) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--max-time", "30", "--cacert"])
        .arg(ca)
        .arg("--resolve")
        .arg(format!("{name}:{port}:{ip}"));
    c
}

/// Polls `check` every 20 ms for up to 30 s; its first `Some`.
pub fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
