//! The proxy logic: route by listener port and `Host`, set the forwarding headers the core
//! trusts, retry another core when one refuses connections (any request) or fails a GET or
//! HEAD before answering, and write an access log line.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session};
use pingora::upstreams::peer::{HttpPeer, Peer};

use crate::config::Timeouts;
use crate::routing::{ListenerRoute, Routes};

/// Headers a client might send that only the edge may set: replaced (or removed), never trusted.
const FORWARDING_HEADERS: [&str; 6] = [
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
];

/// Counts requests in flight, so shutdown can end as soon as they are done.
#[derive(Clone, Default)]
pub struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn enter(&self) -> InFlightGuard {
        self.0.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(self.0.clone())
    }
}

/// Decrements the in-flight count when the request's context is dropped, however it ends.
pub struct InFlightGuard(Arc<AtomicUsize>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Per-request state shared by the filters.
pub struct Ctx {
    listener: Option<Arc<ListenerRoute>>,
    upstream: Option<SocketAddr>,
    tried: Vec<SocketAddr>,
    started: Instant,
    _in_flight: InFlightGuard,
}

/// The edge's `ProxyHttp` implementation.
pub struct Edge {
    pub routes: Arc<Routes>,
    pub timeouts: Timeouts,
    pub in_flight: InFlight,
    /// Whether to record Prometheus metrics (a metrics listener is configured).
    pub metrics: bool,
}

fn status_error(code: u16, why: &'static str) -> Box<Error> {
    Error::explain(ErrorType::HTTPStatus(code), why)
}

fn host_of(session: &Session) -> Option<String> {
    let req = session.req_header();
    req.headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri.authority().map(|a| a.to_string()))
}

/// Counts the request and its latency (requests on no listener are not counted).
fn record(ctx: &Ctx, status: u16) {
    if let Some(l) = &ctx.listener {
        l.metrics
            .record(ctx.upstream, status, ctx.started.elapsed().as_secs_f64());
    }
}

#[async_trait]
impl ProxyHttp for Edge {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            listener: None,
            upstream: None,
            tried: Vec::new(),
            started: Instant::now(),
            _in_flight: self.in_flight.enter(),
        }
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        if ctx.listener.is_none() {
            let port = session
                .server_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.port());
            let route = port.and_then(|p| self.routes.for_port(p)).cloned();
            ctx.listener =
                Some(route.ok_or_else(|| status_error(500, "request on an unknown listener"))?);
        }
        let listener = ctx
            .listener
            .clone()
            .ok_or_else(|| status_error(500, "no listener"))?;
        let host = host_of(session);
        let pool = listener
            .pool_for(host.as_deref())
            .ok_or_else(|| status_error(421, "no upstream for this host name"))?;
        let addr = pool
            .pick(&ctx.tried)
            .ok_or_else(|| status_error(502, "every upstream core is down"))?;
        ctx.tried.push(addr);
        ctx.upstream = Some(addr);
        let mut peer = HttpPeer::new(addr, false, String::new());
        peer.options.connection_timeout = Some(self.timeouts.connect);
        peer.options.read_timeout = Some(self.timeouts.read);
        peer.options.write_timeout = Some(self.timeouts.write);
        peer.options.idle_timeout = Some(self.timeouts.idle);
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Nothing reached the core, so another one may take the request.
        let total = ctx
            .listener
            .as_ref()
            .map(|l| l.pool_for(None).map_or(1, |p| p.addrs.len()))
            .unwrap_or(1);
        tracing::warn!(upstream = %peer.address(), error = %e, "cannot connect to core");
        if ctx.tried.len() < total.max(2) {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("upstream {}", peer.address()));
        let method = &session.req_header().method;
        let idempotent = method == http::Method::GET || method == http::Method::HEAD;
        // A core that died after taking a pull, before a byte of its answer reached the
        // client: another core can answer the same GET or HEAD. Anything else (a write, or an
        // answer already begun) is the client's to retry.
        if idempotent && session.response_written().is_none() {
            let total = ctx
                .listener
                .as_ref()
                .map(|l| l.pool_for(None).map_or(1, |p| p.addrs.len()))
                .unwrap_or(1);
            let again = ctx.tried.len() < total.max(2);
            if again {
                tracing::warn!(upstream = %peer.address(), error = %e,
                    "core failed a pull before answering; trying another");
            }
            e.set_retry(again);
        } else if !method.is_idempotent() || session.as_ref().retry_buffer_truncated() {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        req: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        for h in FORWARDING_HEADERS {
            req.remove_header(h);
        }
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let host = host_of(session).unwrap_or_default();
        let port = ctx.listener.as_ref().map_or(0, |l| l.external_port);
        req.insert_header("X-Forwarded-Proto", "https")?;
        req.insert_header("X-Forwarded-Host", host)?;
        req.insert_header("X-Forwarded-Port", port.to_string())?;
        req.insert_header("X-Forwarded-For", client)?;
        Ok(())
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Ctx) {
        let req = session.req_header();
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        if self.metrics {
            record(ctx, status);
        }
        tracing::info!(
            target: "berth_proxy::access",
            listener = ctx.listener.as_ref().map_or("-", |l| l.name.as_str()),
            client = %session.client_addr().map(|a| a.to_string()).unwrap_or_default(),
            method = %req.method,
            path = %req.uri.path(),
            status,
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            ms = ctx.started.elapsed().as_secs_f64() * 1000.0,
            upstream = %ctx.upstream.map(|u| u.to_string()).unwrap_or_else(|| "-".into()),
            error = %e.map(|e| e.to_string()).unwrap_or_default(),
            "access"
        );
    }
}
