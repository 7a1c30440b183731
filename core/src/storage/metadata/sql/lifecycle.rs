//! The life-cycle contract on SQL: adoption of version 1's files, tag history, restore, usage,
//! and the collector's steps (their statements are in `gc.rs`).

use async_trait::async_trait;
use sqlx::Row;

use super::writes::{self, placeholders};
use super::{db, gc, in_ns, parse, policy, text, SqlMetadata, Tx};
use crate::oci::{Digest, RepoName, Tag};
use crate::storage::metadata::lifecycle::{
    BlobClaim, Cursor, Cutoffs, LifecycleStore, ManifestAge, Preview, Restore, Step, TagEvent,
    TagInfo, Usage,
};
use crate::storage::metadata::{now_ms, Actor, Result};
use crate::storage::Namespace;

fn count(row: &sqlx::any::AnyRow, i: usize) -> Result<u64> {
    let n: i64 = row.try_get(i).map_err(db)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Brings `digest` back from the trash with the referrers deleted with it; the number of
/// manifests restored, or `None` if no row is left.
async fn untrash(tx: &mut Tx, ns: &Namespace, digest: &str) -> Result<Option<u64>> {
    let Some(row) = in_ns(
        "SELECT deleted_at FROM manifests WHERE repo = $1 AND image = $2 AND digest = $3",
        ns,
    )
    .bind(digest)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?
    else {
        return Ok(None);
    };
    let Some(deleted_at) = row.try_get::<Option<i64>, _>(0).map_err(db)? else {
        return Ok(Some(0));
    };
    in_ns(
        "UPDATE manifests SET deleted_at = NULL WHERE repo = $1 AND image = $2 AND digest = $3",
        ns,
    )
    .bind(digest)
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    let mut restored = 1;
    let mut level = vec![digest.to_owned()];
    while !level.is_empty() {
        let mut next = Vec::new();
        for subject in &level {
            let rows = in_ns(
                "UPDATE manifests SET deleted_at = NULL WHERE repo = $1 AND image = $2 \
                 AND subject = $3 AND deleted_at = $4 RETURNING digest",
                ns,
            )
            .bind(subject.clone())
            .bind(deleted_at)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
            for r in &rows {
                next.push(text(r, 0)?);
            }
        }
        restored += next.len() as u64;
        level = next;
    }
    Ok(Some(restored))
}

/// Tags whose latest change removed them from `digest` (its deletion), and that are free.
async fn tags_removed_from(tx: &mut Tx, ns: &Namespace, digest: &str) -> Result<Vec<String>> {
    in_ns(
        "SELECT e.tag FROM tag_events e WHERE e.repo = $1 AND e.image = $2 AND e.previous = $3 \
         AND e.digest IS NULL AND e.at = (SELECT MAX(x.at) FROM tag_events x \
         WHERE x.repo = e.repo AND x.image = e.image AND x.tag = e.tag) \
         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = e.repo AND t.image = e.image AND t.tag = e.tag) \
         ORDER BY e.tag",
        ns,
    )
    .bind(digest)
    .fetch_all(&mut **tx)
    .await
    .map_err(db)?
    .iter()
    .map(|r| text(r, 0))
    .collect()
}

/// What a tag pointed at before its latest change (a delete or a move).
async fn before_last_change(tx: &mut Tx, ns: &Namespace, tag: &str) -> Result<Option<String>> {
    let row = in_ns(
        "SELECT previous FROM tag_events WHERE repo = $1 AND image = $2 AND tag = $3 \
         ORDER BY at DESC LIMIT 1",
        ns,
    )
    .bind(tag)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db)?;
    Ok(row
        .map(|r| r.try_get::<Option<String>, _>(0))
        .transpose()
        .map_err(db)?
        .flatten())
}

async fn restore_in(
    tx: &mut Tx,
    ns: &Namespace,
    tag: Option<&Tag>,
    digest: Option<&Digest>,
    actor: Actor<'_>,
) -> Result<Restore> {
    let target = match (digest, tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => match before_last_change(tx, ns, t.as_str()).await? {
            Some(d) => d,
            None => return Ok(Restore::NoHistory),
        },
        (None, None) => return Ok(Restore::NoHistory),
    };
    let parsed: Digest = parse(target.clone(), "digest")?;
    let Some(manifests) = untrash(tx, ns, &target).await? else {
        return Ok(Restore::Collected(parsed));
    };
    let tags = match tag {
        Some(t) => vec![t.as_str().to_owned()],
        // A manifest alone: the tags its deletion removed come back with it.
        None if manifests > 0 => tags_removed_from(tx, ns, &target).await?,
        None => Vec::new(),
    };
    for t in &tags {
        writes::set_tag(tx, ns, t, &target, actor).await?;
    }
    Ok(Restore::Done {
        digest: parsed,
        manifests,
        tags,
    })
}

#[async_trait]
impl LifecycleStore for SqlMetadata {
    async fn blobs_adopted(&self) -> Result<bool> {
        let row = sqlx::query("SELECT value FROM berth_state WHERE name = 'blobs_adopted'")
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        Ok(row.map(|r| text(&r, 0)).transpose()?.as_deref() == Some("1"))
    }

    async fn adopt_blobs(&self, found: &[(Digest, u64)], done: bool) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let at = now_ms();
        for chunk in found.chunks(500) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| format!("({}, 1, $1)", placeholders(2 + 2 * i, 2)))
                .collect();
            let sql = format!(
                "INSERT INTO blobs (digest, size, stored, touched_at) VALUES {} \
                 ON CONFLICT (digest) DO UPDATE SET size = COALESCE(blobs.size, excluded.size)",
                values.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(at);
            for (d, size) in chunk {
                q = q
                    .bind(d.to_string())
                    .bind(i64::try_from(*size).unwrap_or(i64::MAX));
            }
            q.execute(&mut *tx).await.map_err(db)?;
        }
        if done {
            sqlx::query("UPDATE berth_state SET value = '1' WHERE name = 'blobs_adopted'")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn blobs_without_size(&self, limit: usize) -> Result<Vec<Digest>> {
        sqlx::query(
            "SELECT digest FROM blobs WHERE size IS NULL AND stored = 1 ORDER BY digest LIMIT $1",
        )
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.read)
        .await
        .map_err(db)?
        .iter()
        .map(|r| parse(text(r, 0)?, "digest"))
        .collect()
    }

    async fn set_blob_size(&self, digest: &Digest, size: u64) -> Result<()> {
        sqlx::query("UPDATE blobs SET size = $2 WHERE digest = $1")
            .bind(digest.to_string())
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn tag_history(
        &self,
        ns: &Namespace,
        tag: Option<&Tag>,
        limit: usize,
    ) -> Result<Vec<TagEvent>> {
        const COLUMNS: &str =
            "SELECT image, tag, digest, previous, actor, reason, at FROM tag_events \
                               WHERE repo = $1 AND image = $2";
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match tag {
            Some(t) => {
                let sql = format!("{COLUMNS} AND tag = $3 ORDER BY at DESC LIMIT $4");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ns.repo.as_str())
                    .bind(ns.image.as_str())
                    .bind(t.as_str())
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                let sql = format!("{COLUMNS} ORDER BY at DESC LIMIT $3");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(ns.repo.as_str())
                    .bind(ns.image.as_str())
                    .bind(limit)
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(TagEvent {
                    image: text(r, 0)?,
                    tag: text(r, 1)?,
                    digest: r.try_get(2).map_err(db)?,
                    previous: r.try_get(3).map_err(db)?,
                    actor: text(r, 4)?,
                    reason: text(r, 5)?,
                    at: r.try_get(6).map_err(db)?,
                })
            })
            .collect()
    }

    async fn restore(
        &self,
        ns: &Namespace,
        tag: Option<&Tag>,
        digest: Option<&Digest>,
        actor: Actor<'_>,
    ) -> Result<Restore> {
        let mut tx = self.write_tx().await?;
        let done = restore_in(&mut tx, ns, tag, digest, actor).await?;
        if matches!(done, Restore::Done { .. }) {
            tx.commit().await.map_err(db)?;
        }
        Ok(done)
    }

    async fn usage(&self, repo: &RepoName) -> Result<Usage> {
        let bytes = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE digest IN \
             (SELECT digest FROM blob_links WHERE repo = $1 UNION SELECT digest FROM manifests WHERE repo = $1)",
        )
        .bind(repo.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        let counts = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM manifests WHERE repo = $1 AND deleted_at IS NULL), \
             (SELECT COUNT(*) FROM manifests WHERE repo = $1 AND deleted_at IS NOT NULL), \
             (SELECT COUNT(*) FROM tags WHERE repo = $1), \
             (SELECT COUNT(DISTINCT image) FROM manifests WHERE repo = $1 AND deleted_at IS NULL), \
             (SELECT MAX(pushed_at) FROM manifests WHERE repo = $1 AND deleted_at IS NULL)",
        )
        .bind(repo.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        Ok(Usage {
            blobs: count(&bytes, 0)?,
            bytes: count(&bytes, 1)?,
            manifests: count(&counts, 0)?,
            deleted_manifests: count(&counts, 1)?,
            tags: count(&counts, 2)?,
            images: count(&counts, 3)?,
            last_pushed_at: counts.try_get(4).map_err(db)?,
        })
    }

    async fn blob_totals(&self) -> Result<(u64, u64)> {
        let row = sqlx::query(
            "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE stored = 1",
        )
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        Ok((count(&row, 0)?, count(&row, 1)?))
    }

    async fn tag_infos(&self, ns: &Namespace) -> Result<Vec<TagInfo>> {
        policy::tag_infos(self, ns).await
    }

    async fn manifest_ages(&self, ns: &Namespace) -> Result<Vec<ManifestAge>> {
        policy::manifest_ages(self, ns).await
    }

    async fn freed_bytes(&self, ns: &Namespace, manifests: &[Digest]) -> Result<u64> {
        policy::freed_bytes(self, ns, manifests).await
    }

    async fn record_pulls(&self, pulls: &[(Namespace, Digest, i64)]) -> Result<()> {
        policy::record_pulls(self, pulls).await
    }

    async fn evict_manifest(
        &self,
        ns: &Namespace,
        digest: &Digest,
        actor: Actor<'_>,
    ) -> Result<bool> {
        policy::evict(self, ns, digest, actor).await
    }

    async fn gc_expire_manifests(
        &self,
        cutoffs: Cutoffs,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Step<(Namespace, Digest)>> {
        gc::expire_manifests(self, cutoffs, after, limit).await
    }

    async fn gc_unlink_blobs(
        &self,
        cutoffs: Cutoffs,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<Step<(Namespace, Digest)>> {
        gc::unlink_blobs(self, cutoffs, after, limit).await
    }

    async fn gc_claim_blobs(
        &self,
        cutoffs: Cutoffs,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<(Box<dyn BlobClaim>, Option<Cursor>)> {
        gc::claim_blobs(self, cutoffs, after, limit).await
    }

    async fn gc_prune_history(&self, before_ms: i64) -> Result<u64> {
        gc::prune_history(self, before_ms).await
    }

    async fn gc_preview(&self, cutoffs: Cutoffs, limit: usize) -> Result<Preview> {
        gc::preview(self, cutoffs, limit).await
    }
}
