//! Push, pull, mount and delete events, POSTed to configured endpoints in Distribution's
//! notification envelope (`application/vnd.docker.distribution.events.v1+json`), so consumers
//! written for Distribution (scanners, CI triggers, audit sinks) work unchanged. A tag is
//! reported as Distribution reports it: a manifest push or delete whose target carries `tag`.
//!
//! The request that causes an event never waits for it: [`Notifier::emit`] appends to each
//! endpoint's bounded in-memory queue (one short lock) and returns. One task per endpoint
//! delivers in batches and retries with exponential back-off and jitter while the endpoint is
//! down; when a queue is full the oldest events are dropped and counted. Queues live in memory:
//! events not yet delivered when the process stops are lost, as in Distribution.

mod endpoint;
mod envelope;
pub mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use envelope::{Actor, Event, RequestInfo, SourceInfo, TargetInfo, MEDIA_TYPE};

use endpoint::Endpoint;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Pull,
    Mount,
    Delete,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "push" => Action::Push,
            "pull" => Action::Pull,
            "mount" => Action::Mount,
            "delete" => Action::Delete,
            _ => return None,
        })
    }
}

/// One endpoint, as configured (`notifications.endpoints[]`).
#[derive(Debug, Clone)]
pub struct EndpointSettings {
    pub name: String,
    pub url: http::Uri,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub queue: usize,
    pub ca_file: Option<PathBuf>,
    pub ignored_actions: Vec<Action>,
    pub ignored_media_types: Vec<String>,
    /// `notifications.allow_private_targets`: loopback, private and link-local targets allowed.
    pub allow_private: bool,
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
#[error("notifications endpoint {endpoint}: {reason}")]
pub struct NotifyError {
    pub endpoint: String,
    pub reason: String,
}

/// Fans events out to every endpoint's queue.
#[derive(Default)]
pub struct Notifier {
    endpoints: Vec<Arc<Endpoint>>,
    source: SourceInfo,
}

impl Notifier {
    /// Builds the endpoints (their HTTP clients); [`Notifier::start`] starts delivering.
    pub fn new(settings: &[EndpointSettings], source: SourceInfo) -> Result<Notifier, NotifyError> {
        let endpoints = settings
            .iter()
            .map(|s| Endpoint::new(s.clone()).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Notifier { endpoints, source })
    }

    /// Whether any endpoint is configured (callers skip building events otherwise).
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// Spawns one delivery task per endpoint on the current runtime.
    pub fn start(&self) {
        for e in &self.endpoints {
            let e = e.clone();
            tokio::spawn(async move { e.deliver_forever().await });
        }
    }

    /// Queues an event for every endpoint that wants it; never waits for delivery.
    pub fn emit(&self, mut event: Event) {
        event.source = self.source.clone();
        let event = Arc::new(event);
        for e in &self.endpoints {
            e.offer(&event);
        }
    }

    /// Queues an event the registry caused itself (a cleanup policy, an admin's restore), not
    /// a V2 request: `repository` is the main port's name (`<repository>/<image>`), which
    /// names one image whatever connector its pushes came through; `request` carries only a
    /// `useragent` naming the cause (`berth-cleanup`), as Distribution consumers expect the
    /// object present.
    pub fn emit_internal(&self, action: Action, target: TargetInfo, cause: &str, actor: &str) {
        if !self.enabled() {
            return;
        }
        let request = RequestInfo {
            id: format!("{:x}", rand::random::<u64>()),
            useragent: format!("berth-{cause}"),
            ..RequestInfo::default()
        };
        self.emit(Event::new(action, target, request, actor));
    }

    /// Events waiting per endpoint (for tests and the admin view).
    pub fn pending(&self) -> Vec<(String, usize)> {
        self.endpoints
            .iter()
            .map(|e| (e.name().to_owned(), e.pending()))
            .collect()
    }
}
