//! Real clients verify the edge's certificate and use it: skopeo and podman with `--cert-dir`,
//! dockerd through `/etc/docker/certs.d/HOST:PORT/ca.crt`.

use std::path::PathBuf;
use std::process::Command;

use berth_tests::edge::Edge;
use berth_tests::image::write_layout;
use berth_tests::tools::{podman, run, skopeo};

use crate::harness::*;

#[test]
fn skopeo_and_podman_verify_and_use_the_edge() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let reg = format!("localhost:{}", edge.ports[0]);
    let work = tempfile::tempdir().unwrap();
    let multi = write_layout(
        &work.path().join("multi"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[300_000],
        11,
    );
    let ca_dir = pki.trust_dir();

    // A client with another CA must refuse the edge.
    let other = Pki::new();
    let refused = skopeo()
        .args(["copy", "--all", "--dest-cert-dir"])
        .arg(other.trust_dir())
        .arg(format!("oci:{}:v1", work.path().join("multi").display()))
        .arg(format!("docker://{reg}/sk/multi:v1"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    run(skopeo()
        .args(["copy", "--all", "--dest-cert-dir"])
        .arg(&ca_dir)
        .arg(format!("oci:{}:v1", work.path().join("multi").display()))
        .arg(format!("docker://{reg}/sk/multi:v1")));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&ca_dir)
        .arg(format!("docker://{reg}/sk/multi:v1")));
    assert_eq!(berth_tests::http::digest(&raw.stdout), multi.top);

    let root = work.path().join("podman");
    let remote = format!("{reg}/sk/multi:v1");
    run(podman(&root)
        .args(["pull", "--cert-dir"])
        .arg(&ca_dir)
        .arg(&remote));
    let pushed = format!("{reg}/podman/copy:v1");
    run(podman(&root).args(["tag", &remote, &pushed]));
    run(podman(&root)
        .args(["push", "--cert-dir"])
        .arg(&ca_dir)
        .arg(&pushed));
    let tags = run(skopeo()
        .args(["list-tags", "--cert-dir"])
        .arg(&ca_dir)
        .arg(format!("docker://{reg}/podman/copy")));
    assert!(String::from_utf8_lossy(&tags.stdout).contains("\"v1\""));
}

#[test]
fn docker_verifies_the_edge_through_certs_d() {
    // Docker skips TLS verification for 127.0.0.0/8, so the registry gets a name that
    // resolves only to ::1 and the edge listens there.
    let core = trusting_core();
    let pki = Pki::new();
    let name = "registry.berth.test";
    let (cert, key) = pki.issue("docker", &[name], &["::1"]);
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: \"[::1]:{}\"\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], cert.display(), key.display()
        )
    });
    let port = edge.ports[0];
    let hosts = HostsEntry::add(&format!("::1 {name}"));
    let trust_root = PathBuf::from("/");
    let certs_d = trust_root.join(format!("etc/docker/certs.d/{name}:{port}"));
    let _cleanup = RemoveDir(certs_d.clone());
    let _cleanup2 = RemoveDir(trust_root.join(format!("etc/containers/certs.d/{name}:{port}")));

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("dimg");
    write_layout(&layout, "v1", &[("linux", "amd64")], &[400_000], 21);
    let dockerd = berth_tests::tools::Dockerd::start();
    let remote = format!("{name}:{port}/docker/tls:v1");
    run(skopeo()
        .args(["copy", "--dest-daemon-host"])
        .arg(format!("unix://{}", dockerd.socket.display()))
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-daemon:{remote}")));

    // Without trust: docker must refuse the certificate.
    let refused = dockerd.docker().args(["push", &remote]).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("x509") || err.contains("certificate"), "{err}");

    // berth-certs installs the CA where docker looks; now push and pull work.
    run(Command::new(berth_tests::bin("berth-certs"))
        .args(["docker-trust", &format!("{name}:{port}"), "--ca"])
        .arg(pki.ca()));
    assert!(certs_d.join("ca.crt").exists());
    run(dockerd.docker().args(["push", &remote]));
    run(dockerd.docker().args(["rmi", &remote]));
    run(dockerd.docker().args(["pull", &remote]));
    drop(hosts);
}

/// Adds a line to /etc/hosts for the test's duration.
struct HostsEntry(String);

impl HostsEntry {
    fn add(line: &str) -> HostsEntry {
        let original = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        std::fs::write("/etc/hosts", format!("{original}{line}\n"))
            .expect("writing /etc/hosts (tests run as root)");
        HostsEntry(original)
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/hosts", &self.0);
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
