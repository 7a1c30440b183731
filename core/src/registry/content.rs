//! Content changes made outside the registry API — from the admin API and the web UI: delete
//! a tag or a manifest, restore a tag or a manifest from its history. One implementation for
//! both front-ends, so a change from the UI is the same change (tag history, audit line,
//! webhook event) as the same change from the admin API or a `DELETE /v2/...`.
//!
//! Privileges are the caller's business (the front-end knows who is asking); this layer says
//! what happened in its own terms, and each front-end words it for its clients.

use crate::events::{Action, TargetInfo};
use crate::oci::{Digest, ImageName, Reference, Tag};
use crate::repo::RepoError;
use crate::storage::metadata::lifecycle::Restore;
use crate::storage::metadata::{Actor, MetadataError};
use crate::storage::Namespace;

use super::{Registry, RepoEntry};

/// Deletes a tag (the manifest stays) or a manifest by digest (with its tags), as a
/// `DELETE /v2/<name>/manifests/<reference>` would, and tells the webhooks.
pub async fn delete(
    reg: &Registry,
    entry: &RepoEntry,
    image: &ImageName,
    reference: &Reference,
    actor: &str,
) -> Result<(), RepoError> {
    entry.repo.manifest_delete(image, reference, actor).await?;
    let (digest, tag) = match reference {
        Reference::Digest(d) => (d.to_string(), String::new()),
        Reference::Tag(t) => (String::new(), t.to_string()),
    };
    tracing::info!(target: "berth_core::audit", who = actor, action = "delete",
        repository = %entry.repo.name(), %image, reference = %reference, "audit");
    let target = TargetInfo {
        repository: format!("{}/{image}", entry.repo.name()),
        digest,
        tag,
        ..TargetInfo::default()
    };
    reg.events
        .emit_internal(Action::Delete, target, "content", actor);
    Ok(())
}

/// Brings a tag back to what it pointed at before its last change (or to `digest`), or a
/// deleted manifest back from the trash with the tags its deletion removed; a restore is a
/// push to the webhooks.
pub async fn restore(
    reg: &Registry,
    ns: &Namespace,
    tag: Option<&Tag>,
    digest: Option<&Digest>,
    actor: &str,
) -> Result<Restore, MetadataError> {
    let done = reg
        .lifecycle
        .stores()
        .meta
        .restore(ns, tag, digest, Actor::new(actor, "restore"))
        .await?;
    if let Restore::Done {
        digest,
        manifests,
        tags,
    } = &done
    {
        tracing::info!(target: "berth_core::audit", who = actor, action = "restore",
            namespace = %ns.path(), %digest, tags = ?tags, manifests, "audit");
        announce_restore(reg, ns, (digest, tags, *manifests), actor);
    }
    Ok(done)
}

/// A restore is a push to consumers of events: of each tag that points at the manifest again,
/// or, brought back without tags, of the manifest by digest.
fn announce_restore(
    reg: &Registry,
    ns: &Namespace,
    (digest, tags, manifests): (&Digest, &[String], u64),
    actor: &str,
) {
    let target = |tag: &str| TargetInfo {
        repository: ns.path(),
        digest: digest.to_string(),
        tag: tag.to_owned(),
        ..TargetInfo::default()
    };
    for t in tags {
        reg.events
            .emit_internal(Action::Push, target(t), "restore", actor);
    }
    if tags.is_empty() && manifests > 0 {
        reg.events
            .emit_internal(Action::Push, target(""), "restore", actor);
    }
}

/// The latest changes of `ns`'s tags (of one tag, with `tag`), newest first.
pub async fn history(
    reg: &Registry,
    ns: &Namespace,
    tag: Option<&Tag>,
    limit: usize,
) -> Result<Vec<crate::storage::metadata::lifecycle::TagEvent>, MetadataError> {
    reg.lifecycle
        .stores()
        .meta
        .tag_history(ns, tag, limit)
        .await
}
