//! Hostile input against the real binary: every case gets a clear 4xx (or a closed
//! connection), the server keeps serving, and nothing stored before is lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use berth_tests::core::{default_config, Core};
use berth_tests::http::{self, request};

/// A core with tight limits so slow and abandoned clients are quick to test.
fn strict_core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "{}limits:\n  header_read_timeout: 1s\n  body_idle_timeout: 1s\n  max_upload_sessions: 20\n  upload_expiry: 2s\n",
        default_config(&dir.path().join("data"))
    );
    Core::start_in(dir, &config)
}

/// Pushes a blob and returns its digest, to check later that it survived.
fn precious(addr: &str) -> String {
    let blob = b"precious content that must survive everything";
    let d = http::digest(blob);
    let r = request(
        addr,
        "POST",
        &format!("/v2/safe/blobs/uploads/?digest={d}"),
        &[],
        blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    d
}

fn still_fine(addr: &str, digest: &str) {
    let r = request(addr, "GET", &format!("/v2/safe/blobs/{digest}"), &[], b"").unwrap();
    assert_eq!(r.status, 200, "the server lost content or stopped serving");
    assert_eq!(http::digest(&r.body), digest);
}

/// Sends raw bytes and returns the status of the answer (0 if the connection just closed).
fn raw(addr: &str, bytes: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn paths_names_and_references_that_try_to_escape() {
    let core = strict_core();
    let addr = core.connector("hosted").to_owned();
    let keep = precious(&addr);
    let long_name = format!("/v2/{}tags/list", "a/".repeat(5000));
    let long_tag = format!("/v2/app/manifests/{}", "t".repeat(129));
    let cases = [
        "/v2/../../etc/passwd/manifests/latest",
        "/v2/%2e%2e/%2e%2e/etc/tags/list",
        "/v2/a%2fb/tags/list",
        "/v2/a%00b/tags/list",
        "/v2/app/manifests/..%2f..%2fetc",
        "/v2/app/blobs/sha256:..%2f..%2f..%2fetc%2fpasswd",
        "/v2/app/blobs/sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        "/v2/app/blobs/sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709",
        "/v2/app/blobs/uploads/..%2f..%2fetc",
        "/v2/app/referrers/not-a-digest",
        long_name.as_str(),
        long_tag.as_str(),
    ];
    for path in cases {
        let r = request(&addr, "GET", path, &[], b"").unwrap();
        assert!((400..500).contains(&r.status), "{path}: {}", r.status);
    }
    // Bytes no URL may hold: the HTTP layer refuses them.
    let status = raw(
        &addr,
        b"GET /v2/a\x00b/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(
        status == 0 || (400..500).contains(&status),
        "NUL in the path: {status}"
    );
    still_fine(&addr, &keep);
}

#[test]
fn manifests_that_are_malformed_deep_huge_or_inconsistent() {
    let core = strict_core();
    let addr = core.connector("hosted").to_owned();
    let keep = precious(&addr);
    let missing = http::digest(b"never pushed");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let index_missing_child = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{missing}","size":1}}]}}"#
    );
    let negative = format!(
        r#"{{"schemaVersion":2,"config":{{"mediaType":"x","digest":"{keep}","size":-1}},"layers":[]}}"#
    );
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/vnd.oci.image.manifest.v1+json", b"{not json".to_vec(), 400, "MANIFEST_INVALID"),
        ("application/vnd.oci.image.manifest.v1+json", deep.into_bytes(), 400, "MANIFEST_INVALID"),
        ("application/vnd.oci.image.manifest.v1+json", vec![b' '; 5 << 20], 413, "MANIFEST_INVALID"),
        ("application/vnd.oci.image.index.v1+json", index_missing_child.into_bytes(), 400, "MANIFEST_BLOB_UNKNOWN"),
        ("application/vnd.oci.image.manifest.v1+json", br#"{"schemaVersion":1,"name":"x"}"#.to_vec(), 400, "MANIFEST_INVALID"),
        ("application/vnd.oci.image.manifest.v1+json", negative.into_bytes(), 400, "MANIFEST_INVALID"),
        ("application/vnd.docker.distribution.manifest.v2+json", br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#.to_vec(), 400, "MANIFEST_INVALID"),
    ];
    for (ct, body, status, code) in cases {
        let r = request(
            &addr,
            "PUT",
            "/v2/app/manifests/evil",
            &[("Content-Type", ct)],
            &body,
        )
        .unwrap();
        assert_eq!(
            r.status,
            status,
            "{}",
            String::from_utf8_lossy(&r.body)
                .chars()
                .take(200)
                .collect::<String>()
        );
        assert_eq!(r.code(), code);
    }
    // Blob bytes that do not match their digest are refused and not stored.
    let claimed = http::digest(b"what the client claims");
    let r = request(
        &addr,
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={claimed}"),
        &[],
        b"something else entirely",
    )
    .unwrap();
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    let r = request(
        &addr,
        "HEAD",
        &format!("/v2/app/blobs/{}", http::digest(b"something else entirely")),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    // A manifest cannot be pushed under a digest that is not its own (nor, therefore, name
    // itself: its digest cannot be known before it is written).
    let r = request(
        &addr,
        "PUT",
        &format!("/v2/app/manifests/{missing}"),
        &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
        br#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = request(&addr, "GET", "/v2/app/manifests/evil", &[], b"").unwrap();
    assert_eq!(r.status, 404, "a refused manifest was stored");
    still_fine(&addr, &keep);
}

#[test]
fn ranges_that_are_negative_overlapping_or_huge() {
    let core = strict_core();
    let addr = core.connector("hosted").to_owned();
    let keep = precious(&addr);
    let path = format!("/v2/safe/blobs/{keep}");
    for (range, status) in [
        ("bytes=-5-3", 416),
        ("bytes=5-1", 416),
        ("bytes=0-99999999999999999999", 416),
        ("bytes=99999-", 416),
        ("bytes=abc", 416),
        ("bytes=0-5,3-8", 200),
        ("lines=1-2", 200),
        ("bytes=0-4", 206),
    ] {
        let r = request(&addr, "GET", &path, &[("Range", range)], b"").unwrap();
        assert_eq!(r.status, status, "{range}");
    }
    still_fine(&addr, &keep);
}

#[test]
fn slow_headers_and_slow_bodies_are_cut_off() {
    let core = strict_core();
    let addr = core.connector("hosted").to_owned();
    let keep = precious(&addr);

    // Slowloris headers: a request that never finishes its headers is closed.
    let mut s = TcpStream::connect(&addr).unwrap();
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "the connection was held open"
    );
    assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "{answer}");

    // A trickling body: the upload keeps what arrived and stays resumable.
    let r = request(&addr, "POST", "/v2/slow/blobs/uploads/", &[], b"").unwrap();
    let path = r
        .header("location")
        .unwrap()
        .trim_start_matches(&format!("http://{addr}"))
        .to_owned();
    let mut s = TcpStream::connect(&addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let r = request(&addr, "GET", &path, &[], b"").unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("range"),
        Some("0-9"),
        "bytes before the stall were not kept"
    );
    still_fine(&addr, &keep);
}

#[test]
fn a_header_flood_is_refused() {
    let core = strict_core();
    let addr = core.connector("hosted").to_owned();
    let keep = precious(&addr);
    let mut req = String::from("GET /v2/ HTTP/1.1\r\nHost: x\r\n");
    for i in 0..10_000 {
        req.push_str(&format!("X-Flood-{i}: {i}\r\n"));
    }
    req.push_str("\r\n");
    let status = raw(&addr, req.as_bytes());
    assert!(
        status == 0 || (400..500).contains(&status),
        "10k headers: {status}"
    );
    still_fine(&addr, &keep);
}

#[test]
fn abandoned_upload_sessions_are_capped_then_swept() {
    let core = strict_core();
    let addr = core.connector("hosted").to_owned();
    let mut first = String::new();
    for i in 0..20 {
        let r = request(&addr, "POST", "/v2/flood/blobs/uploads/", &[], b"").unwrap();
        assert_eq!(r.status, 202, "session {i}");
        if i == 0 {
            first = r
                .header("location")
                .unwrap()
                .trim_start_matches(&format!("http://{addr}"))
                .to_owned();
        }
    }
    let r = request(&addr, "POST", "/v2/flood/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.code(), "TOOMANYREQUESTS");
    // upload_expiry is 2 s: the sweeper removes them, and pushes work again.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = request(&addr, "GET", &first, &[], b"").unwrap();
        if r.status == 404 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "abandoned sessions were never swept"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let r = request(&addr, "POST", "/v2/flood/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(r.status, 202);
}
