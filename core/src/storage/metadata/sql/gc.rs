//! The collector's statements. Each step selects candidates in key order after a cursor (one
//! pass over the table in all, however many batches), then deletes them with every condition
//! re-checked in the deleting statement itself: on PostgreSQL a row a concurrent push touched
//! meanwhile is re-evaluated after the push commits and no longer qualifies; SQLite serialises
//! writers. The dry-run preview asks the same questions with the earlier steps' effects folded
//! into the predicates.

use async_trait::async_trait;
use sqlx::Row;

use super::writes::placeholders;
use super::{db, parse, text, SqlMetadata, Tx};
use crate::oci::Digest;
use crate::storage::metadata::lifecycle::{BlobClaim, Cursor, Cutoffs, Preview, Step};
use crate::storage::metadata::{MetadataError, Result};
use crate::storage::Namespace;

/// A deleted manifest `m`, deleted before `$del`, that no live manifest of its image names.
fn expired(m: &str, del: &str) -> String {
    format!(
        "({m}.deleted_at IS NOT NULL AND {m}.deleted_at < {del} AND NOT EXISTS (\
         SELECT 1 FROM manifest_refs {m}r JOIN manifests {m}p ON {m}p.repo = {m}r.repo \
         AND {m}p.image = {m}r.image AND {m}p.digest = {m}r.digest \
         WHERE {m}r.repo = {m}.repo AND {m}r.image = {m}.image AND {m}r.target = {m}.digest \
         AND {m}p.deleted_at IS NULL))"
    )
}

/// A link `l` untouched since `$old` that no manifest of its image names (with `after_expiry`,
/// none that would survive the expiry step).
fn unreferenced_link(l: &str, old: &str, after_expiry: Option<&str>) -> String {
    let survivor = after_expiry.map_or(String::new(), |del| {
        format!(" AND NOT {}", expired(&format!("{l}p"), del))
    });
    format!(
        "({l}.linked_at < {old} AND NOT EXISTS (SELECT 1 FROM manifest_refs {l}r \
         JOIN manifests {l}p ON {l}p.repo = {l}r.repo AND {l}p.image = {l}r.image AND {l}p.digest = {l}r.digest \
         WHERE {l}r.repo = {l}.repo AND {l}r.image = {l}.image AND {l}r.target = {l}.digest{survivor}))"
    )
}

/// A blob record `b` untouched since `$old` that no link and no manifest row holds.
fn unreferenced_blob(b: &str, old: &str) -> String {
    format!(
        "({b}.touched_at < {old} \
         AND NOT EXISTS (SELECT 1 FROM blob_links {b}l WHERE {b}l.digest = {b}.digest) \
         AND NOT EXISTS (SELECT 1 FROM manifests {b}m WHERE {b}m.digest = {b}.digest))"
    )
}

fn key3(c: Option<&Cursor>) -> (String, String, String) {
    match c.map(|c| c.0.as_slice()) {
        Some([a, b, d]) => (a.clone(), b.clone(), d.clone()),
        _ => (String::new(), String::new(), String::new()),
    }
}

fn ns_digest(repo: String, image: String, digest: String) -> Result<(Namespace, Digest)> {
    Ok((
        Namespace::new(parse(repo, "repository name")?, parse(image, "image name")?),
        parse(digest, "digest")?,
    ))
}

fn lim(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Candidates in `table` (rows keyed repo, image, digest) matching `pred` after the cursor.
async fn keyed_candidates(
    s: &SqlMetadata,
    table: &str,
    alias: &str,
    pred: &str,
    cutoff: i64,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<Vec<(String, String, String)>> {
    let (r, i, d) = key3(after);
    let sql = format!(
        "SELECT {alias}.repo, {alias}.image, {alias}.digest FROM {table} {alias} \
         WHERE ({alias}.repo, {alias}.image, {alias}.digest) > ($2, $3, $4) AND {pred} \
         ORDER BY {alias}.repo, {alias}.image, {alias}.digest LIMIT $5"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(cutoff)
        .bind(r)
        .bind(i)
        .bind(d)
        .bind(lim(limit))
        .fetch_all(&s.read)
        .await
        .map_err(db)?;
    rows.iter()
        .map(|row| Ok((text(row, 0)?, text(row, 1)?, text(row, 2)?)))
        .collect()
}

fn next_cursor(found: &[(String, String, String)], limit: usize) -> Option<Cursor> {
    if found.len() < limit {
        return None;
    }
    found
        .last()
        .map(|(r, i, d)| Cursor(vec![r.clone(), i.clone(), d.clone()]))
}

/// Deletes each candidate with `delete` (binding the cut-off, then repo, image, digest), and
/// with `and_then` what belongs to it, in one transaction; what was deleted.
async fn delete_keyed(
    s: &SqlMetadata,
    found: &[(String, String, String)],
    cutoff: i64,
    delete: &str,
    and_then: Option<&'static str>,
) -> Result<Vec<(Namespace, Digest)>> {
    let mut tx = s.write_tx().await?;
    let mut removed = Vec::new();
    for (repo, image, digest) in found {
        let r = sqlx::query(sqlx::AssertSqlSafe(delete.to_owned()))
            .bind(cutoff)
            .bind(repo)
            .bind(image)
            .bind(digest)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if r.rows_affected() == 0 {
            continue;
        }
        if let Some(sql) = and_then {
            sqlx::query(sql)
                .bind(repo)
                .bind(image)
                .bind(digest)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        removed.push(ns_digest(repo.clone(), image.clone(), digest.clone())?);
    }
    tx.commit().await.map_err(db)?;
    Ok(removed)
}

pub(super) async fn expire_manifests(
    s: &SqlMetadata,
    cutoffs: Cutoffs,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<Step<(Namespace, Digest)>> {
    let pred = expired("m", "$1");
    let found = keyed_candidates(
        s,
        "manifests",
        "m",
        &pred,
        cutoffs.deleted_before,
        after,
        limit,
    )
    .await?;
    let delete = format!(
        "DELETE FROM manifests WHERE repo = $2 AND image = $3 AND digest = $4 AND {}",
        expired("manifests", "$1")
    );
    let refs = "DELETE FROM manifest_refs WHERE repo = $1 AND image = $2 AND digest = $3";
    Ok(Step {
        removed: delete_keyed(s, &found, cutoffs.deleted_before, &delete, Some(refs)).await?,
        next: next_cursor(&found, limit),
    })
}

pub(super) async fn unlink_blobs(
    s: &SqlMetadata,
    cutoffs: Cutoffs,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<Step<(Namespace, Digest)>> {
    let pred = unreferenced_link("l", "$1", None);
    let found = keyed_candidates(
        s,
        "blob_links",
        "l",
        &pred,
        cutoffs.touched_before,
        after,
        limit,
    )
    .await?;
    let delete = format!(
        "DELETE FROM blob_links WHERE repo = $2 AND image = $3 AND digest = $4 AND {}",
        unreferenced_link("blob_links", "$1", None)
    );
    Ok(Step {
        removed: delete_keyed(s, &found, cutoffs.touched_before, &delete, None).await?,
        next: next_cursor(&found, limit),
    })
}

/// Blob rows deleted in an open transaction.
struct SqlClaim {
    tx: Tx,
    blobs: Vec<(Digest, Option<u64>)>,
}

#[async_trait]
impl BlobClaim for SqlClaim {
    fn blobs(&self) -> &[(Digest, Option<u64>)] {
        &self.blobs
    }

    async fn commit(self: Box<Self>) -> Result<()> {
        self.tx.commit().await.map_err(db)
    }
}

pub(super) async fn claim_blobs(
    s: &SqlMetadata,
    cutoffs: Cutoffs,
    after: Option<&Cursor>,
    limit: usize,
) -> Result<(Box<dyn BlobClaim>, Option<Cursor>)> {
    let start = after.and_then(|c| c.0.first().cloned()).unwrap_or_default();
    let sql = format!(
        "SELECT b.digest FROM blobs b WHERE b.digest > $2 AND {} ORDER BY b.digest LIMIT $3",
        unreferenced_blob("b", "$1")
    );
    let found: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(cutoffs.touched_before)
        .bind(start)
        .bind(lim(limit))
        .fetch_all(&s.read)
        .await
        .map_err(db)?
        .iter()
        .map(|r| text(r, 0))
        .collect::<Result<_>>()?;
    let next = (found.len() >= limit)
        .then(|| found.last().map(|d| Cursor(vec![d.clone()])))
        .flatten();
    let mut tx = s.write_tx().await?;
    let mut blobs = Vec::new();
    if !found.is_empty() {
        let sql = format!(
            "DELETE FROM blobs WHERE digest IN ({}) AND {} RETURNING digest, size",
            placeholders(2, found.len()),
            unreferenced_blob("blobs", "$1")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cutoffs.touched_before);
        for d in &found {
            q = q.bind(d.clone());
        }
        for row in q.fetch_all(&mut *tx).await.map_err(db)? {
            let size: Option<i64> = row.try_get(1).map_err(db)?;
            blobs.push((
                parse(text(&row, 0)?, "digest")?,
                size.and_then(|n| u64::try_from(n).ok()),
            ));
        }
    }
    Ok((Box::new(SqlClaim { tx, blobs }), next))
}

pub(super) async fn prune_history(s: &SqlMetadata, before_ms: i64) -> Result<u64> {
    let r = sqlx::query("DELETE FROM tag_events WHERE at < $1")
        .bind(before_ms)
        .execute(&s.write)
        .await
        .map_err(db)?;
    Ok(r.rows_affected())
}

/// `(listed, total)` of a keyed preview query: lists up to `limit`, counts all.
async fn keyed_preview(
    s: &SqlMetadata,
    from: &str,
    pred: &str,
    cutoffs: Cutoffs,
    limit: usize,
) -> Result<(Vec<String>, u64)> {
    let list = format!(
        "SELECT x.repo, x.image, x.digest FROM {from} x WHERE {pred} \
         ORDER BY x.repo, x.image, x.digest LIMIT $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(list))
        .bind(cutoffs.deleted_before)
        .bind(cutoffs.touched_before)
        .bind(lim(limit))
        .fetch_all(&s.read)
        .await
        .map_err(db)?;
    let listed = rows
        .iter()
        .map(|r| Ok(format!("{}/{}@{}", text(r, 0)?, text(r, 1)?, text(r, 2)?)))
        .collect::<Result<Vec<_>>>()?;
    let count = format!("SELECT COUNT(*) FROM {from} x WHERE {pred} AND $2 = $2");
    let total: i64 = sqlx::query(sqlx::AssertSqlSafe(count))
        .bind(cutoffs.deleted_before)
        .bind(cutoffs.touched_before)
        .fetch_one(&s.read)
        .await
        .map_err(db)?
        .try_get(0)
        .map_err(db)?;
    Ok((listed, u64::try_from(total).unwrap_or(0)))
}

pub(super) async fn preview(s: &SqlMetadata, cutoffs: Cutoffs, limit: usize) -> Result<Preview> {
    // $1: deleted before, $2: touched before (every query binds both).
    let (manifests, manifest_count) = keyed_preview(
        s,
        "manifests",
        &format!("{} AND $2 = $2", expired("x", "$1")),
        cutoffs,
        limit,
    )
    .await?;
    let (links, link_count) = keyed_preview(
        s,
        "blob_links",
        &unreferenced_link("x", "$2", Some("$1")),
        cutoffs,
        limit,
    )
    .await?;
    // A blob goes if every link to it goes and every manifest row of it expires.
    let pred = format!(
        "b.touched_at < $2 \
         AND NOT EXISTS (SELECT 1 FROM blob_links bl WHERE bl.digest = b.digest AND NOT {}) \
         AND NOT EXISTS (SELECT 1 FROM manifests bm WHERE bm.digest = b.digest AND NOT {})",
        unreferenced_link("bl", "$2", Some("$1")),
        expired("bm", "$1")
    );
    let list =
        format!("SELECT b.digest, b.size FROM blobs b WHERE {pred} ORDER BY b.digest LIMIT $3");
    let rows = sqlx::query(sqlx::AssertSqlSafe(list))
        .bind(cutoffs.deleted_before)
        .bind(cutoffs.touched_before)
        .bind(lim(limit))
        .fetch_all(&s.read)
        .await
        .map_err(db)?;
    let mut blobs = Vec::new();
    for r in &rows {
        let size: Option<i64> = r.try_get(1).map_err(db)?;
        blobs.push((
            text(r, 0)?,
            size.and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        ));
    }
    let totals = format!(
        "SELECT COUNT(*), CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blobs b WHERE {pred}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(totals))
        .bind(cutoffs.deleted_before)
        .bind(cutoffs.touched_before)
        .fetch_one(&s.read)
        .await
        .map_err(db)?;
    let blob_count: i64 = row.try_get(0).map_err(db)?;
    let bytes: i64 = row.try_get(1).map_err(db)?;
    let as_u64 =
        |n: i64| u64::try_from(n).map_err(|_| MetadataError::Corrupt("negative count".into()));
    Ok(Preview {
        truncated: manifest_count > manifests.len() as u64
            || link_count > links.len() as u64
            || as_u64(blob_count)? > blobs.len() as u64,
        manifests,
        links,
        blobs,
        manifest_count,
        link_count,
        blob_count: as_u64(blob_count)?,
        bytes: as_u64(bytes)?,
    })
}
