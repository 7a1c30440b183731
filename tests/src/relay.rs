//! A TCP relay between a proxy repository and its remote, for tests: it records the request
//! lines that pass, can slow responses down, and can cut a response short — the remote
//! conditions a pull-through cache must survive.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running relay (threads end when the test process does).
pub struct Relay {
    pub addr: String,
    /// Request lines seen (`GET /v2/... HTTP/1.1`), in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Bytes per second from the remote, 0 for unlimited.
    pub rate: Arc<AtomicU64>,
    /// Close a connection after this many bytes from the remote (u64::MAX: never).
    pub cut_after: Arc<AtomicU64>,
}

impl Relay {
    pub fn start(upstream: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let addr = listener.local_addr().expect("addr").to_string();
        let relay = Relay {
            addr,
            requests: Arc::new(Mutex::new(Vec::new())),
            rate: Arc::new(AtomicU64::new(0)),
            cut_after: Arc::new(AtomicU64::new(u64::MAX)),
        };
        let (requests, rate, cut) = (
            relay.requests.clone(),
            relay.rate.clone(),
            relay.cut_after.clone(),
        );
        let upstream = upstream.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (requests, rate, cut) = (requests.clone(), rate.clone(), cut.clone());
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => continue,
                };
                std::thread::spawn(move || requests_up(client, server, requests));
                std::thread::spawn(move || responses_down(s2, c2, rate, cut));
            }
        });
        relay
    }

    /// How many recorded requests start with `method` and contain `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.requests
            .lock()
            .map(|r| {
                r.iter()
                    .filter(|l| l.starts_with(method) && l.contains(needle))
                    .count()
            })
            .unwrap_or(0)
    }
}

/// Client → remote: requests from the proxy have no bodies, so every header block is a request.
fn requests_up(mut from: TcpStream, mut to: TcpStream, requests: Arc<Mutex<Vec<String>>>) {
    let mut buf = [0u8; 16 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            if let (Some(line), Ok(mut r)) = (head.lines().next(), requests.lock()) {
                r.push(line.to_owned());
            }
            pending.drain(..end + 4);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Remote → client, throttled and possibly cut.
fn responses_down(
    mut from: TcpStream,
    mut to: TcpStream,
    rate: Arc<AtomicU64>,
    cut: Arc<AtomicU64>,
) {
    let mut buf = [0u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let limit = cut.load(Ordering::SeqCst);
        let n = if sent + n as u64 > limit {
            (limit - sent.min(limit)) as usize
        } else {
            n
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if sent >= limit {
            break;
        }
        let r = rate.load(Ordering::SeqCst);
        if r > 0 {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / r as f64));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
