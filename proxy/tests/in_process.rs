//! The edge started inside a test: `berth_proxy::run` on port 0 with a shutdown channel, a
//! plain-HTTP upstream on another thread, and curl as the HTTPS client trusting the development
//! CA the edge made. Proves the edge's assembly is a library call: it serves, forwards with
//! the `X-Forwarded-*` headers, and returns once told to stop.

// Test helpers panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_proxy::config::ProxyConfig;
use berth_proxy::{run, Listeners, Shutdown};

/// Answers every request with `hello` and sends the request's header lines to `seen`.
fn upstream(seen: mpsc::Sender<Vec<String>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut lines = Vec::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                lines.push(line.trim_end().to_owned());
            }
            // The edge's health checks ask for /readyz (every one answered 200 below).
            if lines
                .first()
                .is_some_and(|l| !l.starts_with("GET /readyz "))
            {
                let _ = seen.send(lines);
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
            );
        }
    });
    addr
}

#[test]
fn the_edge_runs_in_process_on_port_zero_and_stops_when_told() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let (seen_tx, seen) = mpsc::channel();
    let upstream = upstream(seen_tx);
    let path = dir.path().join("proxy.yaml");
    let state = dir.path().join("state");
    std::fs::write(
        &path,
        format!(
            "state_dir: {}\nthreads: 1\nlisteners:\n  - name: hosted\n    listen: 127.0.0.1:1\n    upstreams: [{upstream}]\n",
            state.display()
        ),
    )
    .unwrap();
    // The file needs a fixed port (operators' files must); a program may ask for any.
    let mut config = ProxyConfig::load(&path).unwrap();
    config.listeners[0].listen.set_port(0);
    config.listeners[0].external_port = 0;
    let listeners = Listeners::reserve(&mut config).unwrap();
    let addr = listeners.addr("hosted").unwrap();
    assert_ne!(addr.port(), 0);
    let ready = dir.path().join("ready.json");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = Shutdown::When(Box::pin(async move {
        let _ = stopped.await;
    }));
    let ready_file = Some(ready.clone());
    let edge = std::thread::spawn(move || run(config, listeners, shutdown, ready_file));

    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the edge never became ready");
        assert!(!edge.is_finished(), "the edge stopped before it was ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://localhost:{}/v2/", addr.port());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(state.join("certs/ca.crt"))
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = seen.recv_timeout(Duration::from_secs(10)).unwrap();
    let has = |h: &str| headers.iter().any(|l| l.eq_ignore_ascii_case(h));
    assert!(has("X-Forwarded-Proto: https"), "{headers:?}");
    assert!(
        has(&format!("X-Forwarded-Port: {}", addr.port())),
        "{headers:?}"
    );

    stop.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !edge.is_finished() {
        assert!(Instant::now() < deadline, "the edge did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    edge.join().unwrap().unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the listener is still open after run returned"
    );
}
