//! Raw blob pushes and pulls for the benchmarks: one request per connection, bodies written
//! straight from memory, so the client costs as little as possible and the server's CPU is
//! what is measured. Shared by every benchmark that compares registries.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use crate::http;

/// Chunk size of [`push_chunked`].
pub const CHUNK: usize = 64 << 20;

/// A registry under test: where it listens and which process to charge CPU to.
pub struct Server {
    pub name: &'static str,
    pub addr: String,
    pub pid: u32,
}

/// Sends a request whose body is the concatenation of `parts`; returns status and headers.
pub fn send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    parts: &[&[u8]],
) -> (u16, Vec<(String, String)>) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {len}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write");
    for p in parts {
        s.write_all(p).expect("write body");
    }
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = text
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> &'a str {
    h.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

/// Path part of a Location that may be absolute.
pub fn path_of(location: &str, addr: &str) -> String {
    let p = location
        .trim_start_matches("http://")
        .trim_start_matches(addr);
    p.to_owned()
}

pub fn start_upload(s: &Server, image: &str) -> String {
    let (status, h) = send(
        &s.addr,
        "POST",
        &format!("/v2/{image}/blobs/uploads/"),
        &[],
        &[],
    );
    assert_eq!(status, 202, "{}: POST upload", s.name);
    path_of(header(&h, "location"), &s.addr)
}

pub fn with_digest(path: &str, digest: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}digest={digest}")
}

pub fn push_monolithic(s: &Server, image: &str, data: &[u8]) -> f64 {
    let d = http::digest(data);
    let t = Instant::now();
    let path = start_upload(s, image);
    let (status, _) = send(
        &s.addr,
        "PUT",
        &with_digest(&path, &d),
        &[("Content-Type", "application/octet-stream")],
        &[data],
    );
    assert_eq!(status, 201, "{}: monolithic PUT", s.name);
    t.elapsed().as_secs_f64()
}

pub fn push_chunked(s: &Server, image: &str, data: &[u8]) -> f64 {
    let d = http::digest(data);
    let t = Instant::now();
    let mut path = start_upload(s, image);
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        let start = i * CHUNK;
        let range = format!("{start}-{}", start + chunk.len() - 1);
        let (status, h) = send(
            &s.addr,
            "PATCH",
            &path,
            &[
                ("Content-Range", &range),
                ("Content-Type", "application/octet-stream"),
            ],
            &[chunk],
        );
        assert_eq!(status, 202, "{}: PATCH", s.name);
        path = path_of(header(&h, "location"), &s.addr);
    }
    let (status, _) = send(&s.addr, "PUT", &with_digest(&path, &d), &[], &[]);
    assert_eq!(status, 201, "{}: final PUT", s.name);
    t.elapsed().as_secs_f64()
}

pub fn pull(s: &Server, image: &str, digest: &str) -> (f64, usize) {
    let t = Instant::now();
    let mut sock = TcpStream::connect(&s.addr).expect("connect");
    write!(
        sock,
        "GET /v2/{image}/blobs/{digest} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        s.addr
    )
    .expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        let n = sock.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n;
    }
    (t.elapsed().as_secs_f64(), total)
}
