//! Statements cleanup policies and cache eviction read and write: tags and manifests with their
//! ages, the bytes a removal would free, batched pull times, eviction.

use sqlx::Row;

use super::writes::{self, placeholders};
use super::{db, in_ns, parse, text, SqlMetadata};
use crate::oci::Digest;
use crate::storage::metadata::lifecycle::{ManifestAge, TagInfo};
use crate::storage::metadata::{Actor, Result};
use crate::storage::Namespace;

pub(super) async fn tag_infos(s: &SqlMetadata, ns: &Namespace) -> Result<Vec<TagInfo>> {
    let rows = in_ns(
        "SELECT t.tag, t.digest, t.updated_at, m.pulled_at FROM tags t LEFT JOIN manifests m \
         ON m.repo = t.repo AND m.image = t.image AND m.digest = t.digest \
         WHERE t.repo = $1 AND t.image = $2 ORDER BY t.tag",
        ns,
    )
    .fetch_all(&s.read)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(TagInfo {
                tag: text(r, 0)?,
                digest: parse(text(r, 1)?, "tag digest")?,
                pushed_at: r.try_get(2).map_err(db)?,
                pulled_at: r.try_get(3).map_err(db)?,
            })
        })
        .collect()
}

pub(super) async fn manifest_ages(s: &SqlMetadata, ns: &Namespace) -> Result<Vec<ManifestAge>> {
    let rows = in_ns(
        "SELECT m.digest, m.size, m.pushed_at, m.pulled_at, m.subject, \
         EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.image = m.image AND t.digest = m.digest), \
         EXISTS (SELECT 1 FROM manifest_refs r JOIN manifests p ON p.repo = r.repo AND p.image = r.image \
           AND p.digest = r.digest WHERE r.repo = m.repo AND r.image = m.image AND r.target = m.digest \
           AND p.deleted_at IS NULL) \
         FROM manifests m WHERE m.repo = $1 AND m.image = $2 AND m.deleted_at IS NULL ORDER BY m.digest",
        ns,
    )
    .fetch_all(&s.read)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            let size: i64 = r.try_get(1).map_err(db)?;
            let subject: Option<String> = r.try_get(4).map_err(db)?;
            Ok(ManifestAge {
                digest: parse(text(r, 0)?, "digest")?,
                size: u64::try_from(size).unwrap_or(0),
                pushed_at: r.try_get(2).map_err(db)?,
                pulled_at: r.try_get(3).map_err(db)?,
                subject: subject.map(|d| parse(d, "subject digest")).transpose()?,
                tagged: flag(r, 5)?,
                child: flag(r, 6)?,
            })
        })
        .collect()
}

/// A boolean column: `EXISTS` is an integer on SQLite and a boolean on PostgreSQL.
fn flag(r: &sqlx::any::AnyRow, i: usize) -> Result<bool> {
    if let Ok(b) = r.try_get::<bool, _>(i) {
        return Ok(b);
    }
    let n: i64 = r.try_get(i).map_err(db)?;
    Ok(n != 0)
}

pub(super) async fn freed_bytes(
    s: &SqlMetadata,
    ns: &Namespace,
    manifests: &[Digest],
) -> Result<u64> {
    if manifests.is_empty() {
        return Ok(0);
    }
    let list = placeholders(3, manifests.len());
    // Candidates: the manifests and what they name. Each is freed unless a manifest outside
    // the set names it, a manifest row outside the set is it, or another image links it.
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE b.digest IN ( \
           SELECT digest FROM manifests WHERE repo = $1 AND image = $2 AND digest IN ({list}) \
           UNION SELECT target FROM manifest_refs WHERE repo = $1 AND image = $2 AND digest IN ({list})) \
         AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.target = b.digest \
           AND NOT (r.repo = $1 AND r.image = $2 AND r.digest IN ({list}))) \
         AND NOT EXISTS (SELECT 1 FROM manifests m WHERE m.digest = b.digest \
           AND NOT (m.repo = $1 AND m.image = $2 AND m.digest IN ({list}))) \
         AND NOT EXISTS (SELECT 1 FROM blob_links l WHERE l.digest = b.digest \
           AND NOT (l.repo = $1 AND l.image = $2))"
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ns.repo.as_str())
        .bind(ns.image.as_str());
    for d in manifests {
        q = q.bind(d.to_string());
    }
    let n: i64 = q
        .fetch_one(&s.read)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub(super) async fn record_pulls(
    s: &SqlMetadata,
    pulls: &[(Namespace, Digest, i64)],
) -> Result<()> {
    if pulls.is_empty() {
        return Ok(());
    }
    let mut tx = s.write_tx().await?;
    for (ns, digest, at) in pulls {
        in_ns(
            "UPDATE manifests SET pulled_at = $4 WHERE repo = $1 AND image = $2 AND digest = $3 \
             AND (pulled_at IS NULL OR pulled_at < $4)",
            ns,
        )
        .bind(digest.to_string())
        .bind(*at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}

pub(super) async fn evict(
    s: &SqlMetadata,
    ns: &Namespace,
    digest: &Digest,
    actor: Actor<'_>,
) -> Result<bool> {
    let mut tx = s.write_tx().await?;
    // Deleted "at the epoch": past any undo window, so the next collection takes it.
    let gone = writes::trash_manifest(&mut tx, ns, digest, actor, 0).await?;
    tx.commit().await.map_err(db)?;
    Ok(gone.is_some())
}
