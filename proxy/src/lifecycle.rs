//! Everything that runs beside the proxy: health checks, certificate reloads (SIGHUP and file
//! changes), the ready file, and shutdown that drains in-flight requests.
//!
//! Pingora's own SIGTERM handling sleeps for the whole grace period whatever is in flight, and
//! ignores SIGINT meanwhile. Berth's [`DrainSignal`] keeps pingora's behaviour (listeners close,
//! in-flight requests continue, the grace period is the drain deadline) but ends the process as
//! soon as no request is in flight, so a stop takes as long as the slowest transfer, not longer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use tokio::signal::unix::{signal, SignalKind};

use crate::edge::InFlight;
use crate::metrics::{self, ReloadLabels};
use crate::observe::EdgeState;

/// How long the edge must have had no request in flight before it exits on SIGTERM. A request
/// counts as finished once pingora has handed its last bytes on, but over HTTP/2 up to a
/// client's flow-control window may still sit in the connection's send buffer (measured here:
/// exiting at once cut a 200 MiB download short); this is the time those bytes get to leave.
const LINGER: Duration = Duration::from_secs(2);

/// The background log writer's guard: dropping it flushes pending lines. Kept here because the
/// drain path ends the process with `exit`, which runs no destructors.
static LOG_GUARD: std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>> =
    std::sync::Mutex::new(None);

/// Holds the log writer's guard until the process exits.
pub fn keep_log_guard(guard: tracing_appender::non_blocking::WorkerGuard) {
    *LOG_GUARD.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
}

/// Flushes pending log lines (before the process ends).
pub fn flush_logs() {
    drop(LOG_GUARD.lock().unwrap_or_else(|p| p.into_inner()).take());
}

/// Flushes pending log lines and exits.
fn exit_flushed(code: i32) -> ! {
    flush_logs();
    std::process::exit(code)
}

/// Health checks, certificate watching and the ready file.
pub struct Maintenance {
    pub state: Arc<EdgeState>,
    /// Whether to keep the state gauges (upstream health, certificate expiry) current.
    pub metrics: bool,
    pub interval: Duration,
    pub ready_file: Option<PathBuf>,
    /// `(listener name, address)` to probe before declaring readiness.
    pub listeners: Vec<(String, SocketAddr)>,
}

impl Maintenance {
    async fn health_checks(&self) {
        for pool in self.state.routes.pools() {
            pool.lb.backends().run_health_check(true).await;
        }
    }

    fn reload_changed(&self, force: bool) {
        for r in &self.state.resolvers {
            if force || r.changed() {
                let result = r.reload();
                if let Err(e) = &result {
                    tracing::error!(listener = %r.listener(), error = %e,
                        "certificate reload failed; the previous certificate keeps serving");
                }
                metrics::global()
                    .cert_reloads
                    .get_or_create(&ReloadLabels {
                        listener: r.listener().to_owned(),
                        result: if result.is_ok() { "ok" } else { "error" }.to_owned(),
                    })
                    .inc();
            }
        }
    }

    /// Writes the ready file once every listener accepts connections.
    async fn announce_ready(&self) -> bool {
        let Some(path) = &self.ready_file else {
            return true;
        };
        for (_, addr) in &self.listeners {
            let mut probe = *addr;
            if probe.ip().is_unspecified() {
                probe.set_ip(if addr.is_ipv4() {
                    [127, 0, 0, 1].into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            if tokio::net::TcpStream::connect(probe).await.is_err() {
                return false;
            }
        }
        let listeners: serde_json::Map<String, serde_json::Value> = self
            .listeners
            .iter()
            .map(|(n, a)| (n.clone(), serde_json::Value::String(a.to_string())))
            .collect();
        let body = serde_json::json!({ "listeners": listeners, "pid": std::process::id() });
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, body.to_string()).and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "cannot write the ready file");
        }
        true
    }
}

#[async_trait]
impl BackgroundService for Maintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGHUP; certificates reload on file change only");
                None
            }
        };
        // Polling is coarse but works on every filesystem, including bind mounts and
        // Kubernetes secret volumes where inotify events are unreliable.
        let mut tick = tokio::time::interval(self.interval);
        let mut ready = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    self.health_checks().await;
                    self.reload_changed(false);
                    if self.metrics {
                        self.state.refresh_gauges();
                    }
                    if !ready {
                        ready = self.announce_ready().await;
                    }
                }
                Some(_) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    tracing::info!("SIGHUP: reloading certificates");
                    self.reload_changed(true);
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Shutdown signals: SIGTERM drains (up to the grace period), SIGINT stops at once, SIGQUIT
/// hands the sockets to a new process (pingora's graceful upgrade).
pub struct DrainSignal {
    pub in_flight: InFlight,
    pub deadline: Duration,
}

#[async_trait]
impl ShutdownSignalWatch for DrainSignal {
    async fn recv(&self) -> ShutdownSignal {
        let (mut term, mut int, mut quit) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
        ) {
            (Ok(t), Ok(i), Ok(q)) => (t, i, q),
            _ => {
                tracing::error!("cannot install signal handlers; stopping");
                return ShutdownSignal::FastShutdown;
            }
        };
        tokio::select! {
            _ = term.recv() => {
                tracing::info!(in_flight = self.in_flight.count(), deadline_s = self.deadline.as_secs(),
                    "SIGTERM: no new connections; draining in-flight requests");
                let in_flight = self.in_flight.clone();
                let deadline = self.deadline;
                // Pingora sleeps out the grace period in its main thread; end the process as
                // soon as nothing is in flight instead.
                std::thread::spawn(move || {
                    let start = std::time::Instant::now();
                    let mut idle_since: Option<std::time::Instant> = None;
                    while start.elapsed() < deadline {
                        if in_flight.count() > 0 {
                            idle_since = None;
                        } else if idle_since.get_or_insert_with(std::time::Instant::now).elapsed() >= LINGER {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    tracing::info!(left = in_flight.count(), "drained; exiting");
                    exit_flushed(0);
                });
                ShutdownSignal::GracefulTerminate
            }
            _ = int.recv() => ShutdownSignal::FastShutdown,
            _ = quit.recv() => ShutdownSignal::GracefulUpgrade,
        }
    }
}
