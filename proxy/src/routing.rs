//! Which core connector a request goes to.
//!
//! The listener's local port picks the listener (one pingora service serves every port); the
//! `Host` header picks a host route within it (subdomain routing) or falls back to the
//! listener's default upstreams. Each set of upstreams is a round-robin pool with health checks
//! (`GET /readyz` by default), so several stateless cores can stand behind one edge and one that
//! lost its database leaves the pool.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use pingora::http::RequestHeader;
use pingora::lb::health_check::{HealthCheck as Check, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;

use crate::config::{HealthCheck, ListenerConfig, ProxyConfig};

/// A round-robin pool of core connectors.
pub struct Pool {
    pub lb: LoadBalancer<RoundRobin>,
    pub addrs: Vec<SocketAddr>,
}

impl Pool {
    fn new(addrs: &[SocketAddr], check: HealthCheck) -> std::io::Result<Pool> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(addrs.iter().copied())?;
        lb.set_health_check(checker(check)?);
        Ok(Pool {
            lb,
            addrs: addrs.to_vec(),
        })
    }

    /// Each upstream and whether it passes its health check.
    pub fn health(&self) -> Vec<(SocketAddr, bool)> {
        let backends = self.lb.backends();
        backends
            .get_backend()
            .iter()
            .filter_map(|b| b.addr.as_inet().map(|a| (*a, backends.ready(b))))
            .collect()
    }

    /// A healthy upstream not in `tried`; if none is healthy, any untried one (a health check
    /// may lag a recovery, and trying beats refusing).
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let healthy = self.lb.select_with(b"", 256, |b, healthy| {
            healthy && b.addr.as_inet().is_some_and(|a| !tried.contains(a))
        });
        healthy
            .and_then(|b| b.addr.as_inet().copied())
            .or_else(|| self.addrs.iter().find(|a| !tried.contains(a)).copied())
    }
}

/// The health check of a pool: a core is ready when `GET /readyz` on its connector answers
/// 200 (its database and blob store answer), not merely when it accepts connections.
fn checker(check: HealthCheck) -> std::io::Result<Box<dyn Check + Send + Sync>> {
    Ok(match check {
        HealthCheck::Tcp => TcpHealthCheck::new(),
        HealthCheck::Readyz => {
            let mut hc = HttpHealthCheck::new("berth-edge", false);
            let mut req = RequestHeader::build("GET", b"/readyz", None)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            req.append_header("Host", "berth-edge")
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            hc.req = req;
            Box::new(hc)
        }
    })
}

/// One listener's routing table.
pub struct ListenerRoute {
    pub name: String,
    /// Request metrics with cached handles.
    pub metrics: crate::metrics::ListenerMetrics,
    pub external_port: u16,
    default: Option<Arc<Pool>>,
    hosts: HashMap<String, Arc<Pool>>,
}

impl ListenerRoute {
    /// The pool for a request with this `Host` (port and case ignored).
    /// Every pool of this listener (default and per host).
    pub fn pools(&self) -> impl Iterator<Item = &Arc<Pool>> {
        self.default.iter().chain(self.hosts.values())
    }

    pub fn pool_for(&self, host: Option<&str>) -> Option<&Arc<Pool>> {
        let name = host.map(|h| strip_port(h).to_ascii_lowercase());
        name.and_then(|n| self.hosts.get(&n))
            .or(self.default.as_ref())
    }
}

/// `host[:port]` or `[v6]:port` → host.
pub fn strip_port(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => h,
    }
}

/// Every listener's routes, by local port.
pub struct Routes {
    by_port: HashMap<u16, Arc<ListenerRoute>>,
    pools: Vec<Arc<Pool>>,
}

impl Routes {
    pub fn new(config: &ProxyConfig) -> std::io::Result<Routes> {
        let mut by_port = HashMap::new();
        let mut pools = Vec::new();
        for l in &config.listeners {
            let route = Self::listener(l, config.health_check, &mut pools)?;
            by_port.insert(l.listen.port(), Arc::new(route));
        }
        Ok(Routes { by_port, pools })
    }

    fn listener(
        l: &ListenerConfig,
        check: HealthCheck,
        pools: &mut Vec<Arc<Pool>>,
    ) -> std::io::Result<ListenerRoute> {
        let mut make = |addrs: &[SocketAddr]| -> std::io::Result<Arc<Pool>> {
            let p = Arc::new(Pool::new(addrs, check)?);
            pools.push(p.clone());
            Ok(p)
        };
        let default = if l.upstreams.is_empty() {
            None
        } else {
            Some(make(&l.upstreams)?)
        };
        let mut hosts = HashMap::new();
        for h in &l.hosts {
            let pool = make(&h.upstreams)?;
            for n in &h.names {
                hosts.insert(n.clone(), pool.clone());
            }
        }
        Ok(ListenerRoute {
            metrics: crate::metrics::ListenerMetrics::new(&l.name),
            name: l.name.clone(),
            external_port: l.external_port,
            default,
            hosts,
        })
    }

    /// Every listener's route.
    pub fn listeners(&self) -> impl Iterator<Item = &Arc<ListenerRoute>> {
        self.by_port.values()
    }

    pub fn for_port(&self, port: u16) -> Option<&Arc<ListenerRoute>> {
        self.by_port.get(&port)
    }

    pub fn pools(&self) -> &[Arc<Pool>] {
        &self.pools
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("registry.example:5443"), "registry.example");
        assert_eq!(strip_port("registry.example"), "registry.example");
        assert_eq!(strip_port("[::1]:5443"), "::1");
        assert_eq!(strip_port("::1"), "::1");
    }

    #[test]
    fn picks_skip_tried_upstreams() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let pool = Pool::new(&[a, b], HealthCheck::Tcp).unwrap();
        let first = pool.pick(&[]).unwrap();
        let second = pool.pick(&[first]).unwrap();
        assert_ne!(first, second);
        assert_eq!(pool.pick(&[a, b]), None);
    }
}
