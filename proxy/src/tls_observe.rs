//! Counting TLS handshakes and their failures, which pingora does not report to the proxy.
//!
//! Completed handshakes reach a per-listener [`TlsAccept`] callback. Failed ones never reach
//! any application code: pingora only logs them (through the `log` crate, at ERROR, from
//! `pingora_core::services::listening`, without the listener). So [`HandshakeFailureLayer`]
//! is a `tracing` layer that sees those records even though the access log filters them out
//! (scanners make them noise for operators), and turns each into a counter bump with a bounded
//! reason label.

use std::any::Any;
use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::metrics;

/// Where pingora logs handshake failures.
pub const PINGORA_LISTENING: &str = "pingora_core::services::listening";

/// Counts one listener's completed handshakes.
pub struct HandshakeCounter {
    pub listener: String,
}

#[async_trait]
impl TlsAccept for HandshakeCounter {
    async fn handshake_complete_callback(
        &self,
        _tls: &TlsRef,
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        metrics::global()
            .handshakes
            .get_or_create(&metrics::ListenerLabels {
                listener: self.listener.clone(),
            })
            .inc();
        None
    }
}

/// The `tracing` layer that counts handshake failures from pingora's log records.
pub struct HandshakeFailureLayer;

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        }
    }
}

impl HandshakeFailureLayer {
    /// Only pingora's listening module at ERROR reaches the layer, so the layer neither raises
    /// the process's log level nor looks at the access log.
    pub fn filter() -> tracing_subscriber::filter::Targets {
        tracing_subscriber::filter::Targets::new()
            .with_target(PINGORA_LISTENING, tracing::Level::ERROR)
    }
}

impl<S: Subscriber> Layer<S> for HandshakeFailureLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = Message::default();
        event.record(&mut message);
        let text = message.0;
        if !text.starts_with("Downstream handshake") {
            return;
        }
        let reason = metrics::handshake_failure_reason(&text);
        metrics::global()
            .handshake_failures
            .get_or_create(&metrics::ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }
}
