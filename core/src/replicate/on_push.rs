//! On-push replication: a tag pushed to a repository that a push rule with `on_push` follows
//! is copied within moments, without a scan of the repository. The pushes wait in this
//! core's queue (bounded: [`MAX_PENDING`]; per core, since the core that took the push is the
//! one that knows of it) and go in batches, one run per rule under the rule's lease, so a push
//! during a running scan waits for it to end. A core that stops with pushes still queued
//! leaves them to the rule's schedule (or the next manual run), which finds them missing at
//! the remote: give an on-push rule a schedule too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::run::Selection;
use super::{Direction, Replicator, Repos, StartError};
use crate::oci::RepoName;

/// Pushed tags queued at most; more are left to the schedule (and logged).
pub const MAX_PENDING: usize = 10_000;
/// A pushed (image, tag) and when it was pushed.
type Pushed = ((String, String), Instant);

/// How long a batch waits when its rule's lease is held (a scan running elsewhere).
const HELD_WAIT: Duration = Duration::from_secs(1);

impl Replicator {
    /// Queues `image:tag`, just pushed to `repo`, for the rules that follow pushes there.
    pub fn pushed(&self, repo: &RepoName, image: &str, tag: &str) {
        self.queue(repo, image, tag, |r| r.tags.matches(tag));
    }

    /// Queues the referrers of `subject` (a digest), one of which was just pushed: copied
    /// where the subject was replicated (a subject not there is left alone).
    pub fn referrer_pushed(&self, repo: &RepoName, image: &str, subject: &str) {
        self.queue(repo, image, subject, |_| true);
    }

    fn queue(
        &self,
        repo: &RepoName,
        image: &str,
        tag: &str,
        wanted: impl Fn(&super::Rule) -> bool,
    ) {
        let rules = self.rules();
        let following = rules.iter().filter(|r| {
            r.trigger.on_push
                && r.direction == Direction::Push
                && &r.repository == repo
                && r.wants_image(image)
                && wanted(r)
        });
        let mut queued = false;
        for rule in following {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() >= MAX_PENDING {
                tracing::warn!(rule = %rule.name, %image, %tag, "on-push queue full; the schedule will copy it");
                continue;
            }
            let key = (rule.name.clone(), image.to_owned(), tag.to_owned());
            pending.entry(key).or_insert_with(Instant::now);
            queued = true;
        }
        if queued {
            self.wake.notify_one();
        }
    }

    /// Copies queued pushes until `stop` changes.
    pub async fn follow_pushes(&self, repos: Arc<dyn Repos>, mut stop: watch::Receiver<bool>) {
        if !self.rules().iter().any(|r| r.trigger.on_push) {
            return;
        }
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stop.changed() => return,
            }
            loop {
                let batch =
                    std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
                if batch.is_empty() {
                    break;
                }
                let held = tokio::select! {
                    h = self.copy_batch(repos.as_ref(), batch) => h,
                    _ = stop.changed() => return,
                };
                if held {
                    tokio::select! {
                        _ = tokio::time::sleep(HELD_WAIT) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// One run per rule of the batch; whether some rule's lease was held (its pushes are
    /// queued again).
    async fn copy_batch(
        &self,
        repos: &dyn Repos,
        batch: BTreeMap<(String, String, String), Instant>,
    ) -> bool {
        let mut by_rule: BTreeMap<String, Vec<Pushed>> = BTreeMap::new();
        for ((rule, image, tag), at) in batch {
            by_rule.entry(rule).or_default().push(((image, tag), at));
        }
        let mut held = false;
        for (name, items) in by_rule {
            let Some(rule) = self.rule(&name) else {
                continue;
            };
            let oldest = items.iter().map(|(_, at)| *at).min();
            let tags = items.iter().map(|(t, _)| t.clone()).collect();
            match self.run(repos, &rule, "push", Selection::Tags(tags)).await {
                Ok(_) => {
                    if let Some(at) = oldest {
                        crate::metrics::global()
                            .replication_push_lag
                            .set(at.elapsed().as_secs_f64());
                    }
                }
                Err(StartError::Running { .. }) => {
                    held = true;
                    let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                    for ((image, tag), at) in items {
                        pending.entry((name.clone(), image, tag)).or_insert(at);
                    }
                }
                Err(e) => tracing::error!(rule = %name, error = %e, "on-push replication failed"),
            }
        }
        held
    }
}
