//! The real `berth-core` binary over real sockets: start-up, configuration errors, routing on
//! connectors and the main port, and the spec's flows at the byte level.

use std::process::Command;

use berth_tests::core::{default_config, Core};
use berth_tests::http::{self, request};

#[test]
fn connector_and_main_port_serve_the_same_repository() {
    let core = Core::start();
    let conn = core.connector("hosted");
    let r = request(conn, "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    let blob = b"black-box blob";
    let d = http::digest(blob);
    let r = request(
        conn,
        "POST",
        &format!("/v2/team/app/blobs/uploads/?digest={d}"),
        &[],
        blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("location"),
        Some(format!("http://{conn}/v2/team/app/blobs/{d}").as_str())
    );
    let r = request(
        &core.main,
        "GET",
        &format!("/v2/hosted/team/app/blobs/{d}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, blob);
    let r = request(&core.main, "GET", "/berth/health", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    // The context path is the main port's alone: connectors never need it.
    let r = request(conn, "GET", "/berth/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 404);
}

#[test]
fn forwarded_headers_from_untrusted_peers_are_ignored_with_one_warning() {
    // An explicit empty list trusts nobody, loopback included.
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}trusted_proxies: []\n",
        default_config(&dir.path().join("data"))
    );
    let core = Core::start_in(dir, &config);
    let conn = core.connector("hosted");
    for _ in 0..3 {
        let r = request(
            conn,
            "POST",
            "/v2/app/blobs/uploads/",
            &[
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "evil.example"),
            ],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 202);
        let loc = r.header("location").unwrap_or("");
        assert!(
            loc.starts_with(&format!("http://{conn}/v2/app/blobs/uploads/")),
            "{loc}"
        );
    }
    let log = core.log();
    let warnings: Vec<_> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("not in trusted_proxies"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning per peer, not per request:\n{log}"
    );
    assert!(
        warnings[0].contains("127.0.0.1") && warnings[0].contains("x-forwarded-proto"),
        "the warning names the peer and the header: {}",
        warnings[0]
    );
}

#[test]
fn without_trusted_proxies_key_loopback_edges_are_trusted() {
    let core = Core::start();
    let r = request(
        core.connector("hosted"),
        "POST",
        "/v2/app/blobs/uploads/",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "registry.example"),
            ("X-Forwarded-Port", "5443"),
        ],
        b"",
    )
    .unwrap();
    let loc = r.header("location").unwrap_or("");
    assert!(
        loc.starts_with("https://registry.example:5443/v2/app/blobs/uploads/"),
        "{loc}"
    );
    assert!(!core.log().contains("trusted_proxies"), "{}", core.log());
}

#[test]
fn trusted_proxy_headers_shape_location() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}trusted_proxies: [127.0.0.1]\n",
        default_config(&dir.path().join("data"))
    );
    let core = Core::start_in(dir, &config);
    let r = request(
        core.connector("hosted"),
        "POST",
        "/v2/app/blobs/uploads/",
        &[
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "registry.example"),
            ("X-Forwarded-Port", "5443"),
        ],
        b"",
    )
    .unwrap();
    let loc = r.header("location").unwrap_or("");
    assert!(
        loc.starts_with("https://registry.example:5443/v2/app/blobs/uploads/"),
        "{loc}"
    );
}

#[test]
fn busy_port_names_the_repository() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = default_config(&dir.path().join("data")).replace(
        "connector: { http: 127.0.0.1:0 }",
        &format!("connector: {{ http: 127.0.0.1:{port} }}"),
    );
    std::fs::write(dir.path().join("core.yaml"), config).unwrap();
    let out = Command::new(berth_tests::bin("berth-core"))
        .args(["serve", "--config"])
        .arg(dir.path().join("core.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("repository hosted") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[test]
fn check_config_names_file_key_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "storage: { root: ./d }\nmain: { listen: 127.0.0.1:8081 }\nrepositories:\n  - { name: a, kind: hosted, connector: { http: 127.0.0.1:9 } }\n  - { name: b, kind: hosted, connector: { http: 127.0.0.1:9 } }\n",
    )
    .unwrap();
    let out = berth_tests::core::check_config(&path);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml"), "{err}");
    assert!(err.contains("repositories[1].connector.http"), "{err}");
    assert!(err.contains("repository b wants port 9"), "{err}");

    std::fs::write(
        &path,
        "storage: { root: ./d }\nmain: { listen: 127.0.0.1:8081, contxt: /x }\n",
    )
    .unwrap();
    let out = berth_tests::core::check_config(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("main.contxt") && err.contains("unknown field"),
        "{err}"
    );

    let ok = berth_tests::core::check_config(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/core.yaml"
    ));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn content_stays_after_restart() {
    let mut core = Core::start();
    let conn = core.connector("hosted").to_owned();
    let blob = vec![42u8; 3_000_000];
    let d = http::digest(&blob);
    let r = request(
        &conn,
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={d}"),
        &[],
        &blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    core.restart_same_ports();
    let r = request(
        core.connector("hosted"),
        "GET",
        &format!("/v2/app/blobs/{d}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(http::digest(&r.body), d);
}

#[test]
fn body_shorter_than_content_length_stores_nothing() {
    use std::io::Write;
    let core = Core::start();
    let conn = core.connector("hosted").to_owned();
    let d = http::digest(b"0123456789");
    {
        let mut s = std::net::TcpStream::connect(&conn).unwrap();
        let head = format!("POST /v2/app/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234");
        s.write_all(head.as_bytes()).unwrap();
        // Dropping the socket here is the lie: 5 of 10 promised bytes.
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = request(&conn, "HEAD", &format!("/v2/app/blobs/{d}"), &[], b"").unwrap();
    assert_eq!(r.status, 404);
}
