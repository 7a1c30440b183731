//! Where events may be sent. A webhook is a request the core makes on an operator's word, from
//! inside the network: pointed at `127.0.0.1`, the cloud metadata address `169.254.169.254` or
//! the core's own admin port, it would turn the registry into a way to reach what the network
//! keeps private (server-side request forgery). So targets on loopback, private, link-local,
//! shared (CGNAT) and unique-local addresses are refused unless the operator sets
//! `notifications.allow_private_targets: true` — checked once for an address in the URL, and on
//! every connection for a host name, after resolution (so a name that later resolves to a
//! private address, DNS rebinding, is refused too).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};

/// Whether `ip` is an address the network keeps to itself.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 100.64.0.0/10, shared address space (carrier-grade NAT).
                || (a == 100 && (64..128).contains(&b))
                // 0.0.0.0/8: "this network".
                || a == 0
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local, fe80::/10 link-local.
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Why a URL's host is refused; `None` if it may be sent to.
pub fn refused_host(host: &str) -> Option<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return is_private(ip)
            .then(|| format!("{ip} is a private, loopback or link-local address"));
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    (name == "localhost" || name.ends_with(".localhost"))
        .then(|| format!("{host} names this machine"))
}

/// A resolver that drops private addresses (all of them refused: the connection fails, and
/// the delivery is retried, logged, as for an endpoint that is down).
#[derive(Clone)]
pub struct PublicOnly {
    inner: GaiResolver,
    allow_private: bool,
}

impl PublicOnly {
    pub fn new(allow_private: bool) -> Self {
        PublicOnly {
            inner: GaiResolver::new(),
            allow_private,
        }
    }
}

type Resolving =
    Pin<Box<dyn Future<Output = std::io::Result<std::vec::IntoIter<SocketAddr>>> + Send>>;

impl tower_service::Service<Name> for PublicOnly {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow = self.allow_private;
        let host = name.as_str().to_owned();
        let resolving = self.inner.call(name);
        Box::pin(async move {
            let all: Vec<SocketAddr> = resolving.await?.collect();
            if allow {
                return Ok(all.into_iter());
            }
            let public: Vec<SocketAddr> = all
                .iter()
                .copied()
                .filter(|a| !is_private(a.ip()))
                .collect();
            if public.is_empty() && !all.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{host} resolves only to private addresses; set \
                         notifications.allow_private_targets: true to send there"
                    ),
                ));
            }
            Ok(public.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_addresses_an_attacker_would_aim_at_are_private() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
        assert!(refused_host("localhost").is_some());
        assert!(refused_host("[::1]").is_some());
        assert!(refused_host("hooks.example.com").is_none());
    }
}
