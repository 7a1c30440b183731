//! HTTP helpers the three front-ends share — the registry API, the admin API and the web UI —
//! so that none of them borrows from another: bodies and plain responses, query strings, the
//! facts of a connection, who the client really is behind a trusted edge, the external base
//! URL ([`url`]), and the `Authorization` header taken apart.

pub mod response;
pub mod url;

use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header;
use http::request::Parts;

use crate::config::Cidr;
pub use response::Body;

/// Connection facts a handler needs.
#[derive(Clone, Copy)]
pub struct Conn {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Whether the connection is direct HTTPS (a connector with `https`).
    pub tls: bool,
    /// The request's id (set by the router), for logs and events.
    pub request: u64,
}

/// Parses a query string into pairs (percent-decoded).
pub fn query(req: &Parts) -> Vec<(String, String)> {
    req.uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The first value of `key`.
pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The client address a request really comes from (the edge's X-Forwarded-For if trusted).
pub fn client_ip(trusted: &[Cidr], conn: Conn, parts: &Parts) -> IpAddr {
    let peer = conn.peer.ip();
    if trusted.iter().any(|t| t.contains(peer)) {
        if let Some(ip) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
        {
            return ip;
        }
    }
    peer
}

/// What a request's `Authorization` header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No header: the anonymous caller.
    None,
    Bearer(&'a str),
    Basic {
        user: String,
        password: String,
    },
    /// `Basic` that does not decode to `user:password`.
    MalformedBasic,
    /// Another scheme, or a header that is not text.
    Unsupported,
}

/// Takes the `Authorization` header apart (schemes case-insensitively, as RFC 9110 says).
pub fn credentials(parts: &Parts) -> Credentials<'_> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Credentials::None;
    };
    let Ok(value) = value.to_str() else {
        return Credentials::Unsupported;
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        return Credentials::Bearer(rest.trim());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return Credentials::Unsupported;
    }
    let decoded = STANDARD
        .decode(rest.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok());
    match decoded.as_deref().and_then(|d| d.split_once(':')) {
        Some((user, password)) => Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        },
        None => Credentials::MalformedBasic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(auth: Option<&str>) -> Parts {
        let mut b = http::Request::builder().uri("/");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn authorization_headers_taken_apart() {
        assert_eq!(credentials(&parts(None)), Credentials::None);
        assert_eq!(
            credentials(&parts(Some("Bearer abc "))),
            Credentials::Bearer("abc")
        );
        assert_eq!(
            credentials(&parts(Some("bearer abc"))),
            Credentials::Bearer("abc")
        );
        let basic = format!("BASIC {}", STANDARD.encode("al:i:ce"));
        assert_eq!(
            credentials(&parts(Some(&basic))),
            Credentials::Basic {
                user: "al".into(),
                password: "i:ce".into()
            }
        );
        let bad = format!("Basic {}", STANDARD.encode("nocolon"));
        assert_eq!(credentials(&parts(Some(&bad))), Credentials::MalformedBasic);
        assert_eq!(
            credentials(&parts(Some("Digest x"))),
            Credentials::Unsupported
        );
    }
}
