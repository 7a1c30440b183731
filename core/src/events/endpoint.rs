//! One endpoint: its bounded queue and the task that delivers it.
//!
//! Delivery takes up to [`BATCH`] events, POSTs them as one envelope and removes them only once
//! the endpoint answered 2xx. Woken from an empty queue, the task first lingers [`LINGER`], so
//! a burst of pulls becomes a few envelopes rather than one POST per event, and a receiver that
//! keeps up is not sent one request per pull. A failure (connection refused, timeout, any other
//! status) keeps the batch and waits `backoff`, doubling to `max_backoff`, with ±25 % jitter so
//! several cores do not hammer a recovering endpoint in step; a `Retry-After` in seconds is
//! honoured within the same bounds. The first failure after a success is logged at WARN and the
//! recovery at INFO, so an endpoint down for an hour writes two lines, not thousands.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tokio::sync::Notify;

use super::envelope::{envelope, Event, MEDIA_TYPE};
use super::target::PublicOnly;
use super::{EndpointSettings, NotifyError};
use crate::metrics;

/// Events per envelope.
const BATCH: usize = 100;

/// How long a woken delivery task waits for more events before it POSTs.
const LINGER: Duration = Duration::from_millis(10);

pub struct Endpoint {
    settings: EndpointSettings,
    queue: Mutex<VecDeque<Arc<Event>>>,
    wake: Notify,
    client: Client<HttpsConnector<HttpConnector<PublicOnly>>, Full<Bytes>>,
    /// `berth_notification_pending{endpoint}`, looked up once.
    pending_gauge: prometheus_client::metrics::gauge::Gauge,
}

impl Endpoint {
    pub fn new(settings: EndpointSettings) -> Result<Endpoint, NotifyError> {
        let resolver = PublicOnly::new(settings.allow_private);
        let http = HttpConnector::new_with_resolver(resolver);
        let client =
            crate::net::https_client_over(settings.ca_file.as_deref(), settings.timeout, http)
                .map_err(|e| NotifyError {
                    endpoint: settings.name.clone(),
                    reason: e.to_string(),
                })?;
        Ok(Endpoint {
            pending_gauge: metrics::global().notification_pending_gauge(&settings.name),
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            client,
            settings,
        })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Arc<Event>>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_pending(&self, n: usize) {
        self.pending_gauge.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn pending(&self) -> usize {
        self.queue().len()
    }

    /// Queues the event unless this endpoint ignores it; drops the oldest when full.
    pub fn offer(&self, event: &Arc<Event>) {
        let s = &self.settings;
        if s.ignored_actions.contains(&event.action)
            || s.ignored_media_types.contains(&event.target.media_type)
        {
            return;
        }
        let (dropped, pending) = {
            let mut q = self.queue();
            let dropped = q.len() >= s.queue;
            if dropped {
                q.pop_front();
            }
            q.push_back(event.clone());
            (dropped, q.len())
        };
        if dropped {
            metrics::global().notification_event(&s.name, "dropped", 1);
        }
        self.set_pending(pending);
        self.wake.notify_one();
    }

    /// The delivery loop; runs for the life of the process.
    pub async fn deliver_forever(self: Arc<Self>) {
        let mut wait = self.settings.backoff;
        let mut failing = false;
        loop {
            let batch: Vec<Arc<Event>> = {
                let q = self.queue();
                q.iter().take(BATCH).cloned().collect()
            };
            if batch.is_empty() {
                self.wake.notified().await;
                tokio::time::sleep(LINGER).await;
                continue;
            }
            match self.post(&batch).await {
                Ok(()) => {
                    self.delivered(&batch);
                    if failing {
                        tracing::info!(endpoint = %self.settings.name, "notifications endpoint is delivering again");
                        failing = false;
                    }
                    wait = self.settings.backoff;
                }
                Err(failure) => {
                    metrics::global().notification_failure(&self.settings.name);
                    if !failing {
                        tracing::warn!(endpoint = %self.settings.name, url = %self.settings.url,
                            error = %failure.reason, pending = self.pending(),
                            "notifications endpoint failed; events are kept and retried with back-off");
                        failing = true;
                    }
                    let pause = failure.retry_after.unwrap_or(wait);
                    tokio::time::sleep(jitter(pause.min(self.settings.max_backoff))).await;
                    wait = (wait * 2).min(self.settings.max_backoff);
                }
            }
        }
    }

    /// Removes a delivered batch from the queue's front (unless overflow already dropped it).
    fn delivered(&self, batch: &[Arc<Event>]) {
        let mut q = self.queue();
        let mut removed = 0;
        for e in batch {
            if q.front().is_some_and(|f| Arc::ptr_eq(f, e)) {
                q.pop_front();
                removed += 1;
            }
        }
        let left = q.len();
        drop(q);
        let m = metrics::global();
        m.notification_event(&self.settings.name, "delivered", removed);
        self.set_pending(left);
    }

    async fn post(&self, batch: &[Arc<Event>]) -> Result<(), Failure> {
        let s = &self.settings;
        let mut req = Request::post(s.url.clone()).header("content-type", MEDIA_TYPE);
        for (k, v) in &s.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(envelope(batch))))
            .map_err(|e| Failure::new(e.to_string()))?;
        let started = Instant::now();
        let res = tokio::time::timeout(s.timeout, self.client.request(req))
            .await
            .map_err(|_| Failure::new(format!("no answer within {:?}", s.timeout)))?
            .map_err(|e| Failure::new(describe(&e)))?;
        metrics::global().notification_latency(&s.name, started.elapsed());
        if res.status().is_success() {
            return Ok(());
        }
        let retry_after = (res.status() == StatusCode::TOO_MANY_REQUESTS
            || res.status() == StatusCode::SERVICE_UNAVAILABLE)
            .then(|| res.headers().get("retry-after"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        Err(Failure {
            reason: format!("answered {}", res.status()),
            retry_after,
        })
    }
}

/// A failed delivery.
struct Failure {
    reason: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(reason: String) -> Failure {
        Failure {
            reason,
            retry_after: None,
        }
    }
}

/// The client error with its cause (hyper's own text is only "client error (Connect)").
/// The error with every cause under it (`dns error: vm resolves only to private addresses`).
fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out = format!("{out}: {c}");
        cause = c.source();
    }
    out
}

/// `d` ± 25 %.
fn jitter(d: Duration) -> Duration {
    let f: f64 = rand::random::<f64>() * 0.5 + 0.75;
    d.mul_f64(f)
}
