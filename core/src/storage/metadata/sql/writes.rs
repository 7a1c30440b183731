//! The statements of the store's multi-step writes, each run inside a caller's transaction:
//! a push (manifest row, references, touched links, tag and its history), a delete (to the
//! trash with its referrers and tags), tag changes. Keeping them here lets the trait methods
//! and the life-cycle code (restore, policies) compose them in one transaction.

use sqlx::Row;

use super::{db, in_ns, parse, text, Tx};
use crate::oci::Digest;
use crate::storage::metadata::{
    now, now_ms, Actor, Deleted, ManifestRecord, MetadataError, Put, Result,
};
use crate::storage::Namespace;

/// How deep referrers of referrers are followed when deleting (a signature of an SBOM of an
/// image is two levels).
const MAX_REFERRER_DEPTH: usize = 8;

/// `$from, $from+1, ...` for `n` values.
pub(super) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Marks a blob's bytes placed; `false` if its row is gone (collected).
pub(super) async fn mark_stored(tx: &mut Tx, digest: &Digest, size: u64, at: i64) -> Result<bool> {
    let r =
        sqlx::query("UPDATE blobs SET stored = 1, size = $2, touched_at = $3 WHERE digest = $1")
            .bind(digest.to_string())
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(at)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    Ok(r.rows_affected() > 0)
}

/// Links a blob into an image, or refreshes the link's age.
pub(super) async fn link(tx: &mut Tx, ns: &Namespace, digest: &Digest, at: i64) -> Result<()> {
    in_ns(
        "INSERT INTO blob_links (repo, image, digest, linked_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (repo, image, digest) DO UPDATE SET linked_at = excluded.linked_at",
        ns,
    )
    .bind(digest.to_string())
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Touches the links of the blobs a manifest names (so the collector, which re-checks a
/// link's age as it deletes it, leaves them alone); with `check`, each must exist.
async fn touch_links(
    tx: &mut Tx,
    ns: &Namespace,
    blobs: &[Digest],
    check: bool,
    at: i64,
) -> Result<()> {
    let mut distinct: Vec<String> = blobs.iter().map(ToString::to_string).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "UPDATE blob_links SET linked_at = $3 WHERE repo = $1 AND image = $2 AND digest IN ({})",
        placeholders(4, distinct.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ns.repo.as_str())
        .bind(ns.image.as_str())
        .bind(at);
    for d in &distinct {
        q = q.bind(d.clone());
    }
    let touched = q.execute(&mut **tx).await.map_err(db)?.rows_affected();
    if check && touched != distinct.len() as u64 {
        let first_missing = missing(tx, ns, &distinct, "blob_links").await?;
        return Err(MetadataError::Missing(first_missing));
    }
    Ok(())
}

/// Child manifests must be in the image (not deleted).
async fn check_children(tx: &mut Tx, ns: &Namespace, children: &[Digest]) -> Result<()> {
    let mut distinct: Vec<String> = children.iter().map(ToString::to_string).collect();
    distinct.sort();
    distinct.dedup();
    if distinct.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT COUNT(*) FROM manifests WHERE repo = $1 AND image = $2 AND deleted_at IS NULL \
         AND digest IN ({})",
        placeholders(3, distinct.len())
    );
    let mut q = in_ns_owned(sql, ns);
    for d in &distinct {
        q = q.bind(d.clone());
    }
    let found: i64 = q
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    if found != distinct.len() as i64 {
        return Err(MetadataError::Missing(
            missing(tx, ns, &distinct, "manifests").await?,
        ));
    }
    Ok(())
}

fn in_ns_owned<'q>(
    sql: String,
    ns: &'q Namespace,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ns.repo.as_str())
        .bind(ns.image.as_str())
}

/// The first of `digests` with no row in `table` (for the error message).
async fn missing(tx: &mut Tx, ns: &Namespace, digests: &[String], table: &str) -> Result<Digest> {
    let live = if table == "manifests" {
        " AND deleted_at IS NULL"
    } else {
        ""
    };
    for d in digests {
        let sql =
            format!("SELECT 1 FROM {table} WHERE repo = $1 AND image = $2 AND digest = $3{live}");
        let row = in_ns_owned(sql, ns)
            .bind(d.clone())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db)?;
        if row.is_none() {
            return parse(d.clone(), "digest");
        }
    }
    Err(MetadataError::Corrupt(
        "a reference vanished while it was checked".into(),
    ))
}

/// The whole of a push, in the caller's transaction.
pub(super) async fn put_manifest(
    tx: &mut Tx,
    ns: &Namespace,
    m: &ManifestRecord,
    put: &Put<'_>,
) -> Result<()> {
    // pushed_at in seconds; what the collector compares in milliseconds.
    let (at, touched) = (now(), now_ms());
    if !mark_stored(tx, &m.digest, m.size, touched).await? {
        return Err(MetadataError::Collected(m.digest.clone()));
    }
    touch_links(tx, ns, &m.blobs, put.check_references, touched).await?;
    if put.check_references {
        check_children(tx, ns, &m.children).await?;
    }
    let digest = m.digest.to_string();
    let annotations = m
        .annotations
        .as_ref()
        .map(|a| serde_json::to_string(a).unwrap_or_default());
    in_ns(
        "INSERT INTO manifests (repo, image, digest, media_type, size, subject, artifact_type, annotations, pushed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (repo, image, digest) DO UPDATE SET media_type = excluded.media_type, \
         size = excluded.size, subject = excluded.subject, artifact_type = excluded.artifact_type, \
         annotations = excluded.annotations, pushed_at = excluded.pushed_at, deleted_at = NULL",
        ns,
    )
    .bind(&digest)
    .bind(&m.media_type)
    .bind(i64::try_from(m.size).unwrap_or(i64::MAX))
    .bind(m.subject.as_ref().map(|s| s.to_string()))
    .bind(m.artifact_type.clone())
    .bind(annotations)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    for target in m.references() {
        in_ns(
            "INSERT INTO manifest_refs (repo, image, digest, target) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo, image, digest, target) DO NOTHING",
            ns,
        )
        .bind(&digest)
        .bind(target.to_string())
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    if let Some(t) = put.tag {
        set_tag(tx, ns, t.as_str(), &digest, put.actor).await?;
    }
    Ok(())
}

/// Points a tag at `digest`, recording the change if it is one.
pub(super) async fn set_tag(
    tx: &mut Tx,
    ns: &Namespace,
    tag: &str,
    digest: &str,
    actor: Actor<'_>,
) -> Result<()> {
    let previous = in_ns(
        "SELECT digest FROM tags WHERE repo = $1 AND image = $2 AND tag = $3",
        ns,
    )
    .bind(tag)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    .map(|r| text(&r, 0))
    .transpose()?;
    if previous.as_deref() == Some(digest) {
        return Ok(());
    }
    in_ns(
        "INSERT INTO tags (repo, image, tag, digest, updated_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (repo, image, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at",
        ns,
    )
    .bind(tag)
    .bind(digest)
    .bind(now())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    record(tx, ns, tag, Some(digest), previous.as_deref(), actor).await
}

/// Removes a tag, recording it; `false` if there was none.
pub(super) async fn remove_tag(
    tx: &mut Tx,
    ns: &Namespace,
    tag: &str,
    actor: Actor<'_>,
) -> Result<bool> {
    let gone = in_ns(
        "DELETE FROM tags WHERE repo = $1 AND image = $2 AND tag = $3 RETURNING digest",
        ns,
    )
    .bind(tag)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    let Some(row) = gone else {
        return Ok(false);
    };
    let previous = text(&row, 0)?;
    record(tx, ns, tag, None, Some(&previous), actor).await?;
    Ok(true)
}

async fn record(
    tx: &mut Tx,
    ns: &Namespace,
    tag: &str,
    digest: Option<&str>,
    previous: Option<&str>,
    actor: Actor<'_>,
) -> Result<()> {
    // `at` orders a tag's history, so it must grow even when two changes fall in one
    // millisecond (a delete then a restore): one past the tag's latest event if need be.
    in_ns(
        "INSERT INTO tag_events (repo, image, tag, digest, previous, actor, reason, at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, \
         CASE WHEN m.last IS NULL OR m.last < $8 THEN $8 ELSE m.last + 1 END \
         FROM (SELECT MAX(at) AS last FROM tag_events \
         WHERE repo = $1 AND image = $2 AND tag = $3) m",
        ns,
    )
    .bind(tag)
    .bind(digest.map(str::to_owned))
    .bind(previous.map(str::to_owned))
    .bind(actor.name)
    .bind(actor.reason)
    .bind(now_ms())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

/// Moves a manifest, its referrers (to any depth up to a bound) and their tags to the trash;
/// `None` if it was not live.
pub(super) async fn trash_manifest(
    tx: &mut Tx,
    ns: &Namespace,
    digest: &Digest,
    actor: Actor<'_>,
    at: i64,
) -> Result<Option<Deleted>> {
    let Some(row) = in_ns(
        "UPDATE manifests SET deleted_at = $4 WHERE repo = $1 AND image = $2 AND digest = $3 \
         AND deleted_at IS NULL RETURNING subject",
        ns,
    )
    .bind(digest.to_string())
    .bind(at)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    else {
        return Ok(None);
    };
    let subject: Option<String> = row.try_get(0).map_err(db)?;
    let mut deleted = Deleted {
        subject: subject.map(|s| parse(s, "subject digest")).transpose()?,
        ..Deleted::default()
    };
    let mut level = vec![digest.to_string()];
    for depth in 0..=MAX_REFERRER_DEPTH {
        let mut next = Vec::new();
        for d in &level {
            deleted.tags.extend(untag(tx, ns, d, actor).await?);
            if depth < MAX_REFERRER_DEPTH {
                next.extend(trash_referrers(tx, ns, d, at).await?);
            }
        }
        for r in &next {
            deleted.referrers.push(parse(r.clone(), "referrer digest")?);
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    deleted.tags.sort();
    Ok(Some(deleted))
}

/// Removes (and records) every tag pointing at `digest`.
async fn untag(tx: &mut Tx, ns: &Namespace, digest: &str, actor: Actor<'_>) -> Result<Vec<String>> {
    let tags = in_ns(
        "SELECT tag FROM tags WHERE repo = $1 AND image = $2 AND digest = $3 ORDER BY tag",
        ns,
    )
    .bind(digest)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?
    .iter()
    .map(|r| text(r, 0))
    .collect::<Result<Vec<_>>>()?;
    for t in &tags {
        remove_tag(tx, ns, t, actor).await?;
    }
    Ok(tags)
}

async fn trash_referrers(
    tx: &mut Tx,
    ns: &Namespace,
    subject: &str,
    at: i64,
) -> Result<Vec<String>> {
    in_ns(
        "UPDATE manifests SET deleted_at = $4 WHERE repo = $1 AND image = $2 AND subject = $3 \
         AND deleted_at IS NULL RETURNING digest",
        ns,
    )
    .bind(subject)
    .bind(at)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?
    .iter()
    .map(|r| text(r, 0))
    .collect()
}
