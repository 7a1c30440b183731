//! The external base URL (`scheme://host[:port]`) for absolute URLs in `Location` headers.
//!
//! Behind the edge the client sees `https://registry.example:5443` while the core listens on
//! `http://127.0.0.1:8082`. The edge says so in `X-Forwarded-Proto/Host/Port`; those headers are
//! believed only from configured proxy addresses, because anyone else could use them to make
//! the core point clients at another host.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Mutex;

use http::HeaderMap;

use super::Conn;
use crate::config::Cidr;

/// The forwarding headers an edge sets.
const FORWARDED: [&str; 4] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-for",
];

/// Peers already warned about, so a misconfigured edge costs one log line, not one per request.
/// Bounded: past `WARNED_MAX` addresses nobody new is warned about (the log has said enough).
static WARNED: Mutex<Option<HashSet<IpAddr>>> = Mutex::new(None);
const WARNED_MAX: usize = 1024;

/// Logs one WARN per untrusted peer that sends `X-Forwarded-*`: behind an edge that is not in
/// `trusted_proxies` the core writes URLs with its own scheme and port, and clients then fail in
/// ways that do not point here (skopeo: `malformed HTTP response`).
pub fn warn_untrusted_forwarding(headers: &HeaderMap, conn: Conn, trusted: &[Cidr]) {
    let peer = conn.peer.ip();
    let Some(header) = FORWARDED.iter().find(|h| headers.contains_key(**h)) else {
        return;
    };
    if trusted.iter().any(|t| t.contains(peer)) {
        return;
    }
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    let set = warned.get_or_insert_with(HashSet::new);
    if set.len() >= WARNED_MAX || !set.insert(peer) {
        return;
    }
    tracing::warn!(
        %peer,
        header = *header,
        "ignoring {header} from {peer}, which is not in trusted_proxies; if an edge (berth-proxy) \
         at this address terminates HTTPS, add it to trusted_proxies in the core's config so \
         Location headers and the token realm use the external https URL"
    );
}

/// Computes the base URL for a request on `conn`.
pub fn external_base(headers: &HeaderMap, conn: Conn, trusted: &[Cidr]) -> String {
    let (peer, local) = (conn.peer, conn.local);
    let own_scheme = if conn.tls { "https" } else { "http" };
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or(v).trim())
            .filter(|v| !v.is_empty())
    };
    let host_header = get("host");
    if trusted.iter().any(|t| t.contains(peer.ip())) {
        if let Some(fwd_host) = get("x-forwarded-host").or(host_header) {
            // No X-Forwarded-Proto: a trusted peer talking to us directly, on our scheme.
            let proto = match get("x-forwarded-proto") {
                Some(p) if p.eq_ignore_ascii_case("https") => "https",
                Some(_) => "http",
                None => own_scheme,
            };
            let port = get("x-forwarded-port").and_then(|p| p.parse::<u16>().ok());
            return compose(proto, fwd_host, port);
        }
    }
    match host_header {
        Some(h) if valid_host(h) => format!("{own_scheme}://{h}"),
        _ => compose(own_scheme, &local.ip().to_string(), Some(local.port())),
    }
}

/// Characters a Host value may contain (RFC 3986 reg-name, IP literals, port).
fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:[]%".contains(&b))
}

/// Splits `host[:port]` (IPv6 literals bracketed or bare) into host and optional port.
fn split_host(h: &str) -> (String, Option<u16>) {
    if let Some(rest) = h.strip_prefix('[') {
        if let Some((ip, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
            return (format!("[{ip}]"), port);
        }
    }
    if h.matches(':').count() > 1 {
        return (format!("[{h}]"), None); // a bare IPv6 literal
    }
    match h.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(p) => (host.to_owned(), Some(p)),
            Err(_) => (h.to_owned(), None),
        },
        None => (h.to_owned(), None),
    }
}

/// Builds `proto://host[:port]`, writing the port exactly once and omitting a default one.
pub fn compose(proto: &str, host: &str, port: Option<u16>) -> String {
    let (host, own_port) = split_host(host);
    let host = if valid_host(&host) {
        host
    } else {
        "localhost".to_owned()
    };
    let port = port.or(own_port);
    let default = if proto == "https" { 443 } else { 80 };
    match port {
        Some(p) if p != default => format!("{proto}://{host}:{p}"),
        _ => format!("{proto}://{host}"),
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const EDGE: &str = "127.0.0.1:40000";
    const LOCAL: &str = "127.0.0.1:8082";

    fn base(h: &HeaderMap, peer: &str, trusted: &[&str]) -> String {
        let trusted: Vec<Cidr> = trusted.iter().map(|t| t.parse().unwrap()).collect();
        let conn = Conn {
            peer: peer.parse().unwrap(),
            local: LOCAL.parse().unwrap(),
            tls: false,
            request: 0,
        };
        external_base(h, conn, &trusted)
    }

    #[test]
    fn trusted_proxy_headers_are_used() {
        let h = headers(&[
            ("host", "127.0.0.1:8082"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "registry.example:5443"),
            ("x-forwarded-port", "5443"),
        ]);
        assert_eq!(
            base(&h, EDGE, &["127.0.0.1"]),
            "https://registry.example:5443"
        );
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "r.example"),
            ("x-forwarded-port", "443"),
        ]);
        assert_eq!(base(&h, EDGE, &["127.0.0.1"]), "https://r.example");
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "[::1]:5443"),
        ]);
        assert_eq!(base(&h, EDGE, &["127.0.0.1"]), "https://[::1]:5443");
        let h = headers(&[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "::1"),
            ("x-forwarded-port", "5443"),
        ]);
        assert_eq!(base(&h, EDGE, &["127.0.0.1"]), "https://[::1]:5443");
    }

    #[test]
    fn untrusted_forwarded_headers_are_ignored() {
        let h = headers(&[
            ("host", "127.0.0.1:8082"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        assert_eq!(base(&h, EDGE, &[]), "http://127.0.0.1:8082");
        assert_eq!(
            base(&h, "10.0.0.9:1", &["127.0.0.1"]),
            "http://127.0.0.1:8082"
        );
    }

    #[test]
    fn missing_host_falls_back_to_local_address() {
        assert_eq!(base(&HeaderMap::new(), EDGE, &[]), "http://127.0.0.1:8082");
    }

    proptest! {
        #[test]
        fn port_appears_once(host in "[a-z]{1,10}(\\.[a-z]{1,5}){0,2}", port in 1u16..) {
            let with = compose("https", &format!("{host}:{port}"), Some(port));
            prop_assert_eq!(with.matches(&format!(":{port}")).count(), usize::from(port != 443));
        }
    }
}
