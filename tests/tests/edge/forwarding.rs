//! Forwarding: the core writes the client's `https://host:port` URLs from the edge's
//! `X-Forwarded-*` (a client's own are replaced), host names on one port reach their own cores,
//! a core going down is routed around, and start-up errors name the listener and the cause.

use std::path::Path;

use berth_tests::edge::{curl, free_port, Edge};
use berth_tests::tools::run;

use crate::harness::*;

#[test]
fn location_is_external_and_client_forwarded_headers_are_replaced() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .args([
            "-H",
            "X-Forwarded-Host: evil.example",
            "-H",
            "X-Forwarded-Proto: http",
            "-H",
            "X-Forwarded-Port: 1",
        ])
        .arg(format!(
            "https://registry.test:{port}/v2/team/app/blobs/uploads/"
        )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 202"), "{text}");
    let loc = header(&text, "location").expect("location");
    let prefix = format!("https://registry.test:{port}/v2/team/app/blobs/uploads/");
    assert!(loc.starts_with(&prefix), "{loc}");
    assert_eq!(loc.matches(&format!(":{port}")).count(), 1, "{loc}");
    assert_eq!(
        header(&text, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    // Over HTTP/1.1 too, and the upload completes through the external URL.
    let path = &loc["https://registry.test:".len() + port.to_string().len()..];
    let body = b"through the edge";
    let digest = berth_tests::http::digest(body);
    let data = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(data.path(), body).unwrap();
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--http1.1",
            "-X",
            "PUT",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--data-binary",
        ])
        .arg(format!("@{}", data.path().display()))
        .arg(format!(
            "https://registry.test:{port}{path}?digest={digest}"
        )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert_eq!(
        header(&text, "location"),
        Some(format!(
            "https://registry.test:{port}/v2/team/app/blobs/{digest}"
        ))
    );
}

#[test]
fn one_core_down_requests_keep_succeeding() {
    let a = trusting_core();
    let mut b = trusting_core();
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", &["registry.test"], &["127.0.0.1"]);
    let ups = format!("{}, {}", a.connector("hosted"), b.connector("hosted"));
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nhealth_check_interval: 200ms\nlisteners:\n{}",
            listener_yaml(p[0], &cert, &key, &ups)
        )
    });
    let port = edge.ports[0];
    let get = || {
        curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
            .args(["--fail", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://registry.test:{port}/v2/"))
            .output()
            .unwrap()
    };
    for _ in 0..4 {
        assert!(get().status.success());
    }
    b.kill9();
    // Immediately, before any health check noticed: refused connections are retried elsewhere.
    for i in 0..20 {
        let out = get();
        assert!(
            out.status.success(),
            "request {i} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            edge.log()
        );
    }
}

#[test]
fn start_up_errors_name_the_listener_and_cause() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", &["registry.test"], &[]);
    let (_, other_key) = pki.issue("other", &["other.test"], &[]);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    let cases = [
        (
            listener_yaml(busy, &cert, &key, "127.0.0.1:1"),
            "cannot listen",
        ),
        (
            listener_yaml(free_port(), &cert, &other_key, "127.0.0.1:1"),
            "do not belong together",
        ),
        (
            listener_yaml(
                free_port(),
                Path::new("/nonexistent.crt"),
                &key,
                "127.0.0.1:1",
            ),
            "/nonexistent.crt",
        ),
    ];
    for (listener, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("state_dir: ./state\nlisteners:\n{listener}");
        let err = match Edge::try_start(dir, vec![], &|_| config.clone()) {
            Ok(_) => panic!("edge started with a bad config: {config}"),
            Err(e) => e,
        };
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
        assert!(
            err.contains("listener l"),
            "the listener is not named: {err}"
        );
    }
}

#[test]
fn host_names_on_one_port_route_to_their_own_cores() {
    let a = trusting_core();
    let b = trusting_core();
    let pki = Pki::new();
    let (cert, key) = pki.issue("multi", &["a.test", "b.test"], &[]);
    let (ua, ub) = (
        a.connector("hosted").to_owned(),
        b.connector("hosted").to_owned(),
    );
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    hosts:\n      - {{ names: [a.test], upstreams: [{ua}] }}\n      - {{ names: [B.test], upstreams: [{ub}] }}\n",
            p[0], cert.display(), key.display()
        )
    });
    let port = edge.ports[0];
    let blob = b"only in core a";
    let d = berth_tests::http::digest(blob);
    let r = berth_tests::http::request(
        &ua,
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={d}"),
        &[],
        blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    let status = |name: &str| {
        let out = run(curl(&pki.ca_cert(), name, "127.0.0.1", port)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://{name}:{port}/v2/app/blobs/{d}")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("a.test"), "200");
    assert_eq!(
        status("b.test"),
        "404",
        "b.test must reach core b, which lacks the blob"
    );
    // A host with no route and no default upstreams is refused, not sent anywhere.
    let out = curl(&pki.ca_cert(), "a.test", "127.0.0.1", port)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: c.test",
        ])
        .arg(format!("https://a.test:{port}/v2/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "421");
}
