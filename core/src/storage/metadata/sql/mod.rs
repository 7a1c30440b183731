//! The SQL MetadataStore: one implementation, the same statements on SQLite and PostgreSQL
//! (through sqlx's `any` driver, runtime queries: no database is needed at build time).
//!
//! - **SQLite** (embedded default): one file, WAL journal, `synchronous=NORMAL`. Writes go
//!   through a pool of one connection (SQLite has one writer at a time; queuing them here
//!   avoids `SQLITE_BUSY` on lock upgrades), reads through a pool of several (WAL readers never
//!   block on the writer).
//! - **PostgreSQL** (shared by several cores): one pool. Text columns use the `C` collation, so
//!   listings sort by bytes as on SQLite, whatever the database's default collation is.
//!
//! `open.rs` connects and migrates; this file is the store's statements.

mod cluster;
mod gc;
mod lifecycle;
mod open;
mod policy;
mod replication;
mod sessions;
mod settings;
mod summary;
mod writes;

use std::str::FromStr;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::{
    now_ms, Actor, Deleted, ManifestRecord, MetadataError, MetadataStore, Page, Put, Result,
    UploadRecord,
};
use crate::oci::{Descriptor, Digest, ImageName, RepoName, Tag};
use crate::storage::Namespace;

/// Where the metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file, created if missing.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL; the password, if any, is kept apart so it is never logged.
    Postgres {
        url: String,
        password: Option<String>,
    },
    /// A private in-memory SQLite database (tests).
    Memory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Metadata in SQLite or PostgreSQL.
pub struct SqlMetadata {
    read: AnyPool,
    write: AnyPool,
    kind: Kind,
}

impl SqlMetadata {
    /// A write transaction. On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`):
    /// a transaction that reads first and writes later could otherwise fail with
    /// `SQLITE_BUSY` when another process (`berth-core gc`) wrote in between.
    async fn write_tx(&self) -> Result<Tx> {
        match self.kind {
            Kind::Sqlite => self.write.begin_with("BEGIN IMMEDIATE").await,
            Kind::Postgres => self.write.begin().await,
        }
        .map_err(db)
    }
}

type Tx = sqlx::Transaction<'static, sqlx::Any>;

fn db(e: sqlx::Error) -> MetadataError {
    use sqlx::Error as E;
    // PostgreSQL's class 57 (operator intervention: shutting down, cannot connect now) and
    // 08 (connection exceptions) mean the server is going or gone, not that the query is bad.
    let server_going = |e: &dyn sqlx::error::DatabaseError| {
        e.code()
            .is_some_and(|c| c.starts_with("57") || c.starts_with("08"))
    };
    match &e {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => {
            MetadataError::Unavailable(e.to_string())
        }
        E::Database(d) if server_going(d.as_ref()) => MetadataError::Unavailable(e.to_string()),
        _ => MetadataError::Database(e.to_string()),
    }
}

fn parse<T: FromStr>(s: String, what: &str) -> Result<T> {
    s.parse()
        .map_err(|_| MetadataError::Corrupt(format!("{what} {s:?} in the database")))
}

fn text(row: &AnyRow, i: usize) -> Result<String> {
    row.try_get(i).map_err(db)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// A statement whose `$1` and `$2` are the namespace's repository and image (most are).
fn in_ns<'q>(sql: &'static str, ns: &'q Namespace) -> AnyQuery<'q> {
    sqlx::query(sql)
        .bind(ns.repo.as_str())
        .bind(ns.image.as_str())
}

fn limit(page: &Page) -> i64 {
    page.limit
        .map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn upload_row(row: &AnyRow) -> Result<UploadRecord> {
    let repo: RepoName = parse(text(row, 1)?, "repository name")?;
    let image: ImageName = parse(text(row, 2)?, "image name")?;
    let size: i64 = row.try_get(4).map_err(db)?;
    Ok(UploadRecord {
        id: text(row, 0)?,
        namespace: Namespace::new(repo, image),
        client: text(row, 3)?,
        size: u64::try_from(size).unwrap_or(0),
        updated_at: row.try_get(5).map_err(db)?,
        started: row.try_get::<i64, _>(6).map_err(db)? != 0,
    })
}

/// `started`: an append touched it (`updated_at` moved past `created_at`) or it has bytes.
const UPLOAD_COLUMNS: &str = "id, repo, image, client, size, updated_at, \
    CAST(CASE WHEN size > 0 OR updated_at > created_at THEN 1 ELSE 0 END AS BIGINT)";

#[async_trait]
impl MetadataStore for SqlMetadata {
    async fn blob_intent(&self, digest: &Digest) -> Result<()> {
        sqlx::query(
            "INSERT INTO blobs (digest, size, stored, touched_at) VALUES ($1, NULL, 0, $2) \
             ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
        )
        .bind(digest.to_string())
        .bind(now_ms())
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn blob_placed(&self, ns: Option<&Namespace>, digest: &Digest, size: u64) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let at = now_ms();
        if !writes::mark_stored(&mut tx, digest, size, at).await? {
            drop(tx);
            // Keep the bytes tracked, so the collector removes them if nothing links them.
            self.blob_intent(digest).await?;
            return Err(MetadataError::Collected(digest.clone()));
        }
        if let Some(ns) = ns {
            writes::link(&mut tx, ns, digest, at).await?;
        }
        tx.commit().await.map_err(db)
    }

    async fn link_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let at = now_ms();
        let touched =
            sqlx::query("UPDATE blobs SET touched_at = $2 WHERE digest = $1 AND stored = 1")
                .bind(digest.to_string())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        if touched.rows_affected() == 0 {
            return Ok(false);
        }
        writes::link(&mut tx, ns, digest, at).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn blob_linked(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        let row = in_ns(
            "SELECT 1 FROM blob_links WHERE repo = $1 AND image = $2 AND digest = $3",
            ns,
        )
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        Ok(row.is_some())
    }

    async fn unlink_blob(&self, ns: &Namespace, digest: &Digest) -> Result<bool> {
        let r = in_ns(
            "DELETE FROM blob_links WHERE repo = $1 AND image = $2 AND digest = $3",
            ns,
        )
        .bind(digest.to_string())
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn put_manifest(&self, ns: &Namespace, m: &ManifestRecord, put: &Put<'_>) -> Result<()> {
        let mut tx = self.write_tx().await?;
        writes::put_manifest(&mut tx, ns, m, put).await?;
        tx.commit().await.map_err(db)
    }

    async fn manifest_media_type(&self, ns: &Namespace, digest: &Digest) -> Result<Option<String>> {
        let row = in_ns(
            "SELECT media_type FROM manifests WHERE repo = $1 AND image = $2 AND digest = $3 \
             AND deleted_at IS NULL",
            ns,
        )
        .bind(digest.to_string())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.map(|r| text(&r, 0)).transpose()
    }

    async fn delete_manifest(
        &self,
        ns: &Namespace,
        digest: &Digest,
        actor: Actor<'_>,
    ) -> Result<Option<Deleted>> {
        let mut tx = self.write_tx().await?;
        let deleted = writes::trash_manifest(&mut tx, ns, digest, actor, now_ms()).await?;
        tx.commit().await.map_err(db)?;
        Ok(deleted)
    }

    async fn tag(&self, ns: &Namespace, tag: &Tag) -> Result<Option<Digest>> {
        let row = in_ns(
            "SELECT digest FROM tags WHERE repo = $1 AND image = $2 AND tag = $3",
            ns,
        )
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.map(|r| parse(text(&r, 0)?, "tag digest")).transpose()
    }

    async fn tagged_manifest(&self, ns: &Namespace, tag: &Tag) -> Result<Option<(Digest, String)>> {
        let row = in_ns(
            "SELECT t.digest, m.media_type FROM tags t JOIN manifests m \
             ON m.repo = t.repo AND m.image = t.image AND m.digest = t.digest \
             WHERE t.repo = $1 AND t.image = $2 AND t.tag = $3 AND m.deleted_at IS NULL",
            ns,
        )
        .bind(tag.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.map(|r| Ok((parse(text(&r, 0)?, "tag digest")?, text(&r, 1)?)))
            .transpose()
    }

    async fn delete_tag(&self, ns: &Namespace, tag: &Tag, actor: Actor<'_>) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let removed = writes::remove_tag(&mut tx, ns, tag.as_str(), actor).await?;
        tx.commit().await.map_err(db)?;
        Ok(removed)
    }

    async fn tags(&self, ns: &Namespace, page: &Page) -> Result<Option<Vec<String>>> {
        let exists = in_ns(
            "SELECT 1 FROM manifests WHERE repo = $1 AND image = $2 AND deleted_at IS NULL \
             UNION ALL SELECT 1 FROM blob_links WHERE repo = $1 AND image = $2 LIMIT 1",
            ns,
        )
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows = in_ns(
            "SELECT tag FROM tags WHERE repo = $1 AND image = $2 AND tag > $3 ORDER BY tag LIMIT $4",
            ns,
        )
        .bind(page.after.clone().unwrap_or_default())
        .bind(limit(page))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| text(r, 0))
            .collect::<Result<_>>()
            .map(Some)
    }

    async fn images(&self, repo: &RepoName, page: &Page) -> Result<Vec<ImageName>> {
        let rows = sqlx::query(
            "SELECT DISTINCT image FROM manifests WHERE repo = $1 AND image > $2 AND deleted_at IS NULL \
             ORDER BY image LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(page.after.clone().unwrap_or_default())
        .bind(limit(page))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| parse(text(r, 0)?, "image name"))
            .collect()
    }

    async fn referrers(&self, ns: &Namespace, subject: &Digest) -> Result<Vec<Descriptor>> {
        let rows = in_ns(
            "SELECT digest, media_type, size, artifact_type, annotations FROM manifests \
             WHERE repo = $1 AND image = $2 AND subject = $3 AND deleted_at IS NULL ORDER BY digest",
            ns,
        )
        .bind(subject.to_string())
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let annotations: Option<String> = r.try_get(4).map_err(db)?;
                let annotations = annotations
                    .map(|a| {
                        serde_json::from_str(&a)
                            .map_err(|e| MetadataError::Corrupt(format!("annotations: {e}")))
                    })
                    .transpose()?;
                Ok(Descriptor {
                    digest: text(r, 0)?,
                    media_type: text(r, 1)?,
                    size: r.try_get(2).map_err(db)?,
                    artifact_type: r.try_get(3).map_err(db)?,
                    annotations,
                    urls: None,
                    platform: None,
                })
            })
            .collect()
    }

    async fn upload_open(&self, u: &UploadRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO uploads (id, repo, image, client, size, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
        )
        .bind(&u.id)
        .bind(u.namespace.repo.as_str())
        .bind(u.namespace.image.as_str())
        .bind(&u.client)
        .bind(i64::try_from(u.size).unwrap_or(i64::MAX))
        .bind(u.updated_at)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadRecord>> {
        let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.map(|r| upload_row(&r)).transpose()
    }

    async fn upload_progress(&self, id: &str, size: u64) -> Result<()> {
        sqlx::query("UPDATE uploads SET size = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(i64::try_from(size).unwrap_or(i64::MAX))
            .bind(now_ms())
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn upload_touch(&self, id: &str) -> Result<()> {
        // Strictly after the opening, even within its millisecond: that is what `started` reads.
        sqlx::query(
            "UPDATE uploads SET updated_at = \
             CASE WHEN $2 > created_at THEN $2 ELSE created_at + 1 END WHERE id = $1",
        )
        .bind(id)
        .bind(now_ms())
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn upload_close(&self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() > 0)
    }

    async fn uploads(&self, repo: Option<&RepoName>) -> Result<Vec<UploadRecord>> {
        let rows = match repo {
            Some(r) => {
                let sql =
                    format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE repo = $1 ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(r.as_str())
                    .fetch_all(&self.read)
                    .await
            }
            None => {
                let sql = format!("SELECT {UPLOAD_COLUMNS} FROM uploads ORDER BY id");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.read)
                    .await
            }
        }
        .map_err(db)?;
        rows.iter().map(upload_row).collect()
    }
}
