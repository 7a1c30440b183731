//! TLS at the edge and on a core's direct-HTTPS connector: SNI, rotation under traffic, a broken
//! certificate refused, TLS 1.2 and 1.3 only, handshake failures kept out of the error log, plain
//! HTTP on a TLS port answered readably, a development CA made once.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::edge::{curl, wait_for, Edge};
use berth_tests::image::write_layout;
use berth_tests::tools::{run, skopeo};

use crate::harness::*;

#[test]
fn sni_picks_the_certificate() {
    let core = trusting_core();
    let pki = Pki::new();
    let (a_cert, a_key) = pki.issue("a", &["a.test"], &[]);
    let (b_cert, b_key) = pki.issue("b", &["b.test"], &[]);
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    sni:\n      - {{ names: [b.test], cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], a_cert.display(), a_key.display(), b_cert.display(), b_key.display()
        )
    });
    let port = edge.ports[0];
    for name in ["a.test", "b.test"] {
        let out = run(curl(&pki.ca_cert(), name, "127.0.0.1", port)
            .args(["-v", "-o", "/dev/null"])
            .arg(format!("https://{name}:{port}/v2/")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("CN={name}")), "{name}: {err}");
    }
}

/// Runs GET /v2/ through the edge in a loop until stopped; counts successes and failures.
fn traffic(
    ca: PathBuf,
    port: u16,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut errors = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let out = curl(&ca, "registry.test", "127.0.0.1", port)
                .args(["--fail", "-o", "/dev/null"])
                .arg(format!("https://registry.test:{port}/v2/"))
                .output()
                .unwrap();
            if out.status.success() {
                ok.fetch_add(1, Ordering::SeqCst);
            } else {
                failed.fetch_add(1, Ordering::SeqCst);
                errors.push(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        errors
    })
}

fn served_subject(ca: &Path, port: u16) -> String {
    let out = run(curl(ca, "registry.test", "127.0.0.1", port)
        .args(["-v", "-o", "/dev/null"])
        .arg(format!("https://registry.test:{port}/v2/")));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    err.lines()
        .find(|l| l.contains("subject:"))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn certificates_rotate_under_traffic_and_a_broken_one_is_refused() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let live = pki.dir.path().join("leaf");
    assert!(served_subject(&pki.ca_cert(), port).contains("CN=registry.test"));

    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = traffic(
        pki.ca_cert(),
        port,
        stop.clone(),
        ok.clone(),
        failed.clone(),
    );
    let traffic_beyond = |n: usize| {
        wait_for(|| (ok.load(Ordering::SeqCst) >= n).then_some(()))
            .expect("the load made no progress")
    };
    traffic_beyond(5);

    // Rotate: a new certificate whose first name (the CN) differs, written over the old files.
    let (new_cert, new_key) = pki.issue("next", &["rotated.test", "registry.test"], &["127.0.0.1"]);
    std::fs::copy(&new_key, live.join("server.key.new")).unwrap();
    std::fs::copy(&new_cert, live.join("server.crt.new")).unwrap();
    std::fs::rename(live.join("server.key.new"), live.join("server.key")).unwrap();
    std::fs::rename(live.join("server.crt.new"), live.join("server.crt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_subject(&pki.ca_cert(), port).contains("CN=rotated.test") {
        assert!(
            Instant::now() < deadline,
            "new certificate never served:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    traffic_beyond(ok.load(Ordering::SeqCst) + 5);

    // A broken certificate: the last good one keeps serving, and the failure is logged.
    std::fs::write(
        live.join("server.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    edge.signal("HUP");
    edge.wait_log("certificate reload failed");
    assert!(served_subject(&pki.ca_cert(), port).contains("CN=rotated.test"));

    stop.store(true, Ordering::SeqCst);
    let errors = load.join().unwrap();
    assert!(
        ok.load(Ordering::SeqCst) > 10,
        "too little traffic to mean anything"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed requests during rotation: {errors:?}"
    );
}

#[test]
fn failed_handshakes_are_not_logged_as_errors() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let other = Pki::new();
    for _ in 0..5 {
        let out = curl(&other.ca_cert(), "registry.test", "127.0.0.1", port)
            .arg(format!("https://registry.test:{port}/v2/"))
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
    let ok = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://registry.test:{port}/v2/")));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    // The access line is written after the response has gone out.
    let log = edge.wait_log("access");
    assert!(
        !log.contains("ERROR"),
        "handshake failures flood the log:\n{log}"
    );
}

#[test]
fn core_serves_https_directly_without_the_edge() {
    let pki = Pki::new();
    let (_core, port) = direct_https_core(&pki);
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!(
            "https://registry.test:{port}/v2/app/blobs/uploads/"
        )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    let loc = header(&text, "location").unwrap_or_default();
    assert!(
        loc.starts_with(&format!(
            "https://registry.test:{port}/v2/app/blobs/uploads/"
        )),
        "{loc}"
    );

    let work = tempfile::tempdir().unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64")],
        &[100_000],
        31,
    );
    run(skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(pki.trust_dir())
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://localhost:{port}/direct/app:v1")));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(pki.trust_dir())
        .arg(format!("docker://localhost:{port}/direct/app:v1")));
    assert_eq!(berth_tests::http::digest(&raw.stdout), img.top);
}

#[test]
fn only_tls_1_2_and_1_3_are_offered() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let url = format!("https://registry.test:{port}/v2/");
    let old = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["--tlsv1.1", "--tls-max", "1.1", "-o", "/dev/null"])
        .arg(&url)
        .output()
        .unwrap();
    assert!(!old.status.success(), "TLS 1.1 was accepted");
    for (v, alpn) in [("1.2", "--http1.1"), ("1.3", "--http2")] {
        let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
            .args([
                &format!("--tlsv{v}"),
                "--tls-max",
                v,
                alpn,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg(&url));
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let want_version = if alpn == "--http2" { "2" } else { "1.1" };
        assert_eq!(got, format!("200 {want_version}"), "TLS {v}");
    }
}

#[test]
fn without_certificates_the_edge_makes_a_development_ca_once() {
    let core = trusting_core();
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!("state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    upstreams: [{upstream}]\n", p[0])
    });
    let certs = edge.dir.path().join("state/certs");
    let ca = certs.join("ca.crt");
    assert!(ca.exists() && certs.join("server.key").exists());
    assert!(
        edge.log().contains("docker-trust"),
        "no trust instructions:\n{}",
        edge.log()
    );
    assert!(
        edge.log().contains("days_left"),
        "expiry not logged:\n{}",
        edge.log()
    );
    let port = edge.ports[0];
    let out = run(curl(&ca, "localhost", "127.0.0.1", port)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://localhost:{port}/v2/")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

/// Sends `bytes` and reads until the peer closes.
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Audit: plain HTTP sent to a TLS port got TLS alert bytes back, which clients report as
/// `malformed HTTP response "\x15\x03\x03..."`. Both TLS front ends now answer a readable 400.
#[test]
fn plain_http_to_a_tls_port_gets_a_readable_400() {
    let pki = Pki::new();
    let (core, https_port) = direct_https_core(&pki);
    let edge = edge_for(&core, &pki, "");
    let request = b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\nUser-Agent: plain\r\n\r\n";
    for addr in [
        format!("127.0.0.1:{}", edge.ports[0]),
        format!("127.0.0.1:{https_port}"),
    ] {
        let out = String::from_utf8_lossy(&raw_exchange(&addr, request)).into_owned();
        assert!(out.starts_with("HTTP/1.1 400 "), "{addr}: {out:?}");
        assert!(out.contains("Use https://"), "{addr}: {out:?}");
        // TLS clients on the same ports are served as before.
        let ok = run(curl(
            &pki.ca_cert(),
            "registry.test",
            "127.0.0.1",
            addr.rsplit(':').next().unwrap().parse().unwrap(),
        )
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "https://registry.test:{}/v2/",
            addr.rsplit(':').next().unwrap()
        )));
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    }
}
