//! The `berth-certs` command line, end to end: a CA, a leaf, `show`, and `docker-trust`.

// Test helpers panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn certs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_berth-certs"))
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run berth-certs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn ca_issue_show_and_trust() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    ok(certs().args(["ca", "--out"]).arg(&ca));
    ok(certs()
        .args(["issue", "--ca"])
        .arg(&ca)
        .args(["--host", "registry.example", "--ip", "10.1.2.3", "--out"])
        .arg(dir.path()));
    let shown = ok(certs().arg("show").arg(dir.path().join("server.crt")));
    assert!(
        shown.contains("DNS:registry.example") && shown.contains("IP:10.1.2.3"),
        "{shown}"
    );
    assert!(shown.contains("days left"), "{shown}");
    assert!(
        shown.contains("issuer:     CN=Berth registry CA"),
        "{shown}"
    );

    let root = dir.path().join("root");
    let out = ok(certs()
        .args(["docker-trust", "registry.example:5443", "--ca"])
        .arg(&ca)
        .arg("--root")
        .arg(&root));
    let docker = root.join("etc/docker/certs.d/registry.example:5443/ca.crt");
    let podman = root.join("etc/containers/certs.d/registry.example:5443/ca.crt");
    assert!(out.contains(&docker.display().to_string()), "{out}");
    assert_eq!(
        std::fs::read(&docker).unwrap(),
        std::fs::read(ca.join("ca.crt")).unwrap()
    );
    assert!(podman.exists());

    let bad = certs()
        .args(["docker-trust", "registry.example", "--ca"])
        .arg(&ca)
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("HOST:PORT"));
}
