//! A remote that sends the wrong bytes for a digest (a broken mirror, a tampered cache in
//! between): the proxy repository caches nothing, and no client ever receives the whole of what
//! the remote sent — the last byte waits for the cache's verification, which fails, so the
//! client's transfer is cut short rather than completed with a wrong layer.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use berth_tests::core::Core;
use berth_tests::http::digest;

const SIZE: usize = 3 << 20;

/// A remote on a free port that answers every blob GET with `SIZE` bytes of 7s (whatever the
/// digest asked for) and anything else with `{}`.
fn lying_remote() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(conn));
        }
    });
    addr
}

fn answer(mut conn: TcpStream) {
    let mut first = String::new();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    if reader.read_line(&mut first).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let body = if first.contains("/blobs/") {
        vec![7u8; SIZE]
    } else {
        b"{}".to_vec()
    };
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
}

/// GETs `path`, reading to the end whatever comes: (status, body bytes received).
fn pull(addr: &str, path: &str) -> (u16, usize) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all[..all.len().min(200)]).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(0, |i| all.len() - i - 4);
    (status, body)
}

#[test]
fn a_remote_sending_the_wrong_bytes_reaches_no_client_whole_and_is_not_cached() {
    let remote = lying_remote();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hub, kind: proxy, connector: {{ http: 127.0.0.1:0 }}, remote: {{ url: \"http://{remote}\" }} }}\n",
        dir.path().join("data").display()
    );
    let data = dir.path().join("data");
    let core = Core::start_in(dir, &config);
    let wanted = digest(b"the layer the client asked for");
    let path = format!("/v2/lib/app/blobs/{wanted}");
    for attempt in 0..2 {
        let (status, got) = pull(core.connector("hub"), &path);
        assert!(
            status != 200 || got < SIZE,
            "attempt {attempt}: a client received all {got} bytes the remote lied with"
        );
    }
    let hex = wanted.trim_start_matches("sha256:");
    let stored = walk(&data)
        .into_iter()
        .any(|p| p.to_string_lossy().contains(hex));
    assert!(!stored, "the wrong bytes were stored under {wanted}");
    assert!(
        core.log().contains("nothing cached"),
        "the failure is logged: {}",
        core.log()
    );
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
