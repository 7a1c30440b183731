//! `berth-proxy check-config`: errors name the file, the key and the reason.

// Test helpers panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::process::Command;

fn check(yaml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_berth-proxy"))
        .arg("check-config")
        .arg(&path)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn check_config_reports_key_and_reason() {
    let (ok, text) = check("listeners:\n  - listen: 127.0.0.1:5443\n    upstreams: [127.0.0.1:8082]\n    tls: { cert: /nonexistent.crt, key: /nonexistent.key }\n");
    assert!(!ok);
    assert!(
        text.contains("listener 127.0.0.1:5443") && text.contains("/nonexistent.crt"),
        "{text}"
    );

    let (ok, text) = check("listeners:\n  - listen: 127.0.0.1:5443\n    upstreams: [127.0.0.1:8082]\n    tls: { cert: a, key: b, chain: c }\n");
    assert!(!ok);
    assert!(
        text.contains("proxy.yaml") && text.contains("listeners[0].tls") && text.contains("chain"),
        "{text}"
    );

    let (ok, text) =
        check("listeners:\n  - listen: 127.0.0.1:5443\n    upstreams: [127.0.0.1:8082]\n");
    assert!(ok, "{text}");
}
