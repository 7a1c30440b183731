//! What every edge test needs: a core that trusts the loopback edge, a CA made by `berth-certs`,
//! an edge in front of a core, and a core serving HTTPS itself.

use std::path::{Path, PathBuf};

use berth_tests::core::{default_config, Core};
use berth_tests::edge::{issue, make_ca, Edge};

/// A core behind the edge exactly as documented for the simplest setup: its YAML has no
/// `trusted_proxies` key, so the loopback edge is trusted by default (audit: with the key
/// absent every push through the edge once failed on an `http://` Location).
pub(crate) fn trusting_core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = default_config(&dir.path().join("data"));
    assert!(!config.contains("trusted_proxies"));
    Core::start_in(dir, &config)
}

pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
}

impl Pki {
    pub(crate) fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        make_ca(&dir.path().join("ca"));
        Pki { dir }
    }
    pub(crate) fn ca(&self) -> PathBuf {
        self.dir.path().join("ca")
    }
    pub(crate) fn ca_cert(&self) -> PathBuf {
        self.ca().join("ca.crt")
    }
    /// A directory with only `ca.crt`, as skopeo's and podman's `--cert-dir` want it (a `.key`
    /// there would be taken for a client certificate's key).
    pub(crate) fn trust_dir(&self) -> PathBuf {
        let d = self.dir.path().join("trust");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.ca_cert(), d.join("ca.crt")).unwrap();
        d
    }
    pub(crate) fn issue(&self, name: &str, hosts: &[&str], ips: &[&str]) -> (PathBuf, PathBuf) {
        issue(&self.ca(), &self.dir.path().join("leaf"), name, hosts, ips)
    }
}

pub(crate) fn listener_yaml(port: u16, cert: &Path, key: &Path, upstreams: &str) -> String {
    format!(
        "  - name: l{port}\n    listen: 127.0.0.1:{port}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstreams}]\n",
        cert.display(),
        key.display()
    )
}

pub(crate) fn edge_for(core: &Core, pki: &Pki, extra: &str) -> Edge {
    let (cert, key) = pki.issue(
        "server",
        &["registry.test", "localhost"],
        &["127.0.0.1", "::1"],
    );
    let upstream = core.connector("hosted").to_owned();
    Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nhealth_check_interval: 200ms\n{extra}listeners:\n{}",
            listener_yaml(p[0], &cert, &key, &upstream)
        )
    })
}

pub(crate) fn header(out: &str, name: &str) -> Option<String> {
    out.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
        .map(|l| {
            l.split_once(':')
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        })
}

/// A core serving direct HTTPS with `cert`/`key` on its only connector.
pub(crate) fn direct_https_core(pki: &Pki) -> (Core, u16) {
    let (cert, key) = pki.issue("direct", &["registry.test", "localhost"], &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n  - name: hosted\n    kind: hosted\n    connector:\n      http: 127.0.0.1:0\n      https: {{ listen: 127.0.0.1:0, cert: {}, key: {} }}\n",
        dir.path().join("data").display(),
        cert.display(),
        key.display()
    );
    let core = Core::start_in(dir, &config);
    let addr = core
        .https_connectors
        .get("hosted")
        .expect("https connector");
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    (core, port)
}
