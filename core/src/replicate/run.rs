//! One run of a rule: list what the source has (Berth's images for push, the remote's catalog
//! for pull), keep what the filters want, copy each tag ([`super::copy`]) with retries on
//! transient remote failures, optionally delete at the destination what the source no longer
//! has, and report it all. A tag that fails is reported and the run goes on; a source that
//! cannot be listed fails the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::copy::{Copier, Tally};
use super::remote::RemoteRegistry;
use super::rule::{Direction, Rule};
use super::side::{Local, Side};
use super::ReplicateError;
use crate::repo::Repository;

/// Attempts per tag; transient remote failures wait 1 s, then 2 s, between them.
const ATTEMPTS: u32 = 3;
/// Failures listed in a report (the count is always whole).
const FAILURES_LISTED: usize = 50;

/// A tag that could not be copied.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub image: String,
    pub tag: Option<String>,
    pub reason: String,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    /// Some tags copied, some failed.
    Partial,
    Failed,
}

/// What a run did, as stored and listed.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: String,
    pub rule: String,
    pub core: String,
    pub trigger: String,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: i64,
    pub outcome: Outcome,
    #[serde(flatten)]
    pub tally: Tally,
    pub failed: u64,
    pub failures: Vec<Failure>,
    /// Why the run as a whole failed (the source could not be listed, ...).
    pub error: Option<String>,
}

/// What a run did, before it is dated and named.
#[derive(Debug, Default)]
pub struct Ran {
    pub tally: Tally,
    pub failures: Vec<Failure>,
    /// Tags (and listings) that failed; `failures` lists the first of them.
    pub failed: u64,
    /// Why the run as a whole failed.
    pub error: Option<String>,
}

impl Ran {
    fn fatal(tally: Tally, error: String) -> Ran {
        Ran {
            tally,
            error: Some(error),
            ..Ran::default()
        }
    }
}

/// What a run copies.
pub enum Selection {
    /// Everything the source has that the filters want.
    All,
    /// These tags (image, tag) only: pushes an on-push rule follows.
    Tags(Vec<(String, String)>),
}

/// Runs `rule` against `repo` (its Berth repository), whatever happens.
pub async fn run(rule: &Rule, repo: Option<Arc<dyn Repository>>, selection: Selection) -> Ran {
    let started = Instant::now();
    let remote = match RemoteRegistry::open(&rule.remote) {
        Ok(r) => r,
        Err(e) => return Ran::fatal(Tally::default(), e.to_string()),
    };
    let Some(repo) = repo else {
        let e = format!("repository {} is not served", rule.repository);
        return Ran::fatal(Tally::default(), e);
    };
    let local = Local {
        repo,
        actor: format!("replication:{}", rule.name),
    };
    let (src, dst): (&dyn Side, &dyn Side) = match rule.direction {
        Direction::Push => (&local, &remote),
        Direction::Pull => (&remote, &local),
    };
    let mut pass = Pass {
        rule,
        copier: Copier::new(src, dst),
        failures: Vec::new(),
        failed: 0,
    };
    match selection {
        Selection::All => {
            let images = match src.images().await {
                Ok(all) => all,
                Err(e) => return Ran::fatal(pass.copier.tally, format!("listing images: {e}")),
            };
            for image in images.iter().filter(|i| rule.wants_image(i)) {
                pass.image(image).await;
            }
        }
        Selection::Tags(tags) => {
            for (image, tag) in &tags {
                pass.tag(image, tag).await;
            }
        }
    }
    let failed = pass.failed;
    tracing::info!(rule = %rule.name, seconds = started.elapsed().as_secs_f64(),
        copied = pass.copier.tally.images_copied, failed, "replication run done");
    Ran {
        tally: pass.copier.tally,
        failures: pass.failures,
        failed,
        error: None,
    }
}

/// One run going through its images, counting what fails.
struct Pass<'a> {
    rule: &'a Rule,
    copier: Copier<'a>,
    failures: Vec<Failure>,
    failed: u64,
}

impl Pass<'_> {
    fn failed(&mut self, image: &str, tag: Option<&str>, e: &ReplicateError) {
        self.failed += 1;
        note(&mut self.failures, image, tag, e);
    }

    /// Every wanted tag of `image`, then (with `delete`) what the source no longer has.
    async fn image(&mut self, image: &str) {
        let tags = match self.copier.src.tags(image).await {
            Ok(t) => t,
            Err(e) => return self.failed(image, None, &e),
        };
        let wanted: Vec<&String> = tags.iter().filter(|t| self.rule.tags.matches(t)).collect();
        for tag in &wanted {
            self.tag(image, tag).await;
        }
        if self.rule.delete {
            let to = self.rule.destination_of(image);
            if let Err(e) = delete_gone(&mut self.copier, self.rule, &to, &wanted).await {
                self.failed(image, None, &e);
            }
        }
    }

    async fn tag(&mut self, image: &str, tag: &str) {
        let to = self.rule.destination_of(image);
        if let Err(e) = with_retries(&mut self.copier, image, &to, tag).await {
            tracing::warn!(rule = %self.rule.name, %image, %tag, error = %e, "replicating a tag failed");
            self.failed(image, Some(tag), &e);
        }
    }
}

fn note(failures: &mut Vec<Failure>, image: &str, tag: Option<&str>, e: &ReplicateError) {
    if failures.len() < FAILURES_LISTED {
        failures.push(Failure {
            image: image.to_owned(),
            tag: tag.map(str::to_owned),
            reason: e.to_string(),
        });
    }
}

async fn with_retries(
    copier: &mut Copier<'_>,
    image: &str,
    to: &str,
    tag: &str,
) -> Result<(), ReplicateError> {
    let mut wait = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        match copier.tag(image, to, tag).await {
            Err(e) if e.is_transient() && attempt < ATTEMPTS => {
                tracing::debug!(%image, %tag, error = %e, attempt, "retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Tags at the destination the filters cover but the source no longer has.
async fn delete_gone(
    copier: &mut Copier<'_>,
    rule: &Rule,
    to: &str,
    wanted: &[&String],
) -> Result<(), ReplicateError> {
    let there = copier.dst.tags(to).await?;
    // A referrers fallback tag (`sha256-<hex>`) belongs to the referrers, not to the source.
    let fallback = |t: &str| {
        t.strip_prefix("sha256-")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    for tag in there
        .iter()
        .filter(|t| rule.tags.matches(t) && !fallback(t))
    {
        if !wanted.contains(&tag) {
            copier.delete(to, tag).await?;
        }
    }
    Ok(())
}
