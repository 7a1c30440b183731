//! Statements of the cluster store: signing keys, leases, collection runs.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, text, SqlMetadata};
use crate::storage::metadata::cluster::{CleanupRun, ClusterStore, GcRun, KeyRecord, KeySlot};
use crate::storage::metadata::{now_ms, Result};

fn key(r: &AnyRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        kid: text(r, 0)?,
        secret: r.try_get(1).map_err(db)?,
        created_at: r.try_get(2).map_err(db)?,
        retired_at: r.try_get(3).map_err(db)?,
    })
}

fn run(r: &AnyRow) -> Result<GcRun> {
    let scheduled: i64 = r.try_get(2).map_err(db)?;
    Ok(GcRun {
        id: text(r, 0)?,
        core: text(r, 1)?,
        scheduled: scheduled != 0,
        started_at: r.try_get(3).map_err(db)?,
        report: text(r, 4)?,
    })
}

const KEY_IN_SLOT: &str =
    "SELECT kid, secret, created_at, retired_at FROM signing_keys WHERE slot = $1";

#[async_trait]
impl ClusterStore for SqlMetadata {
    async fn signing_key_init(&self, candidate: &KeyRecord) -> Result<KeyRecord> {
        sqlx::query(
            "INSERT INTO signing_keys (slot, kid, secret, created_at, retired_at) \
             VALUES ('current', $1, $2, $3, NULL) ON CONFLICT (slot) DO NOTHING",
        )
        .bind(&candidate.kid)
        .bind(candidate.secret.as_deref())
        .bind(candidate.created_at)
        .execute(&self.write)
        .await
        .map_err(db)?;
        // Read from the writer: a reader could lag behind the insert on PostgreSQL replicas.
        let row = sqlx::query(KEY_IN_SLOT)
            .bind(KeySlot::Current.as_str())
            .fetch_one(&self.write)
            .await
            .map_err(db)?;
        key(&row)
    }

    async fn signing_key(&self, slot: KeySlot) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(KEY_IN_SLOT)
            .bind(slot.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.as_ref().map(key).transpose()
    }

    async fn signing_key_rotate(&self, next: &KeyRecord) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM signing_keys WHERE slot = 'previous'")
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query(
            "UPDATE signing_keys SET slot = 'previous', retired_at = $1 WHERE slot = 'current'",
        )
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "INSERT INTO signing_keys (slot, kid, secret, created_at, retired_at) \
             VALUES ('current', $1, $2, $3, NULL)",
        )
        .bind(&next.kid)
        .bind(next.secret.as_deref())
        .bind(next.created_at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        super::settings::bump(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    async fn lease_take(
        &self,
        name: &str,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<bool> {
        // One statement: insert, or take over an expired lease, or renew one's own.
        let changed = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at <= $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .execute(&self.write)
        .await
        .map_err(db)?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn lease_release(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn lease_holder(&self, name: &str, now_ms: i64) -> Result<Option<String>> {
        let row = sqlx::query("SELECT holder FROM leases WHERE name = $1 AND expires_at > $2")
            .bind(name)
            .bind(now_ms)
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        row.map(|r| text(&r, 0)).transpose()
    }

    async fn gc_run_record(&self, run: &GcRun, keep: u32) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO gc_runs (id, core, scheduled, started_at, report) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&run.id)
        .bind(&run.core)
        .bind(i64::from(run.scheduled))
        .bind(run.started_at)
        .bind(&run.report)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "DELETE FROM gc_runs WHERE id NOT IN \
             (SELECT id FROM gc_runs ORDER BY started_at DESC, id DESC LIMIT $1)",
        )
        .bind(i64::from(keep))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn gc_runs(&self, limit: u32) -> Result<Vec<GcRun>> {
        let rows = sqlx::query(
            "SELECT id, core, scheduled, started_at, report FROM gc_runs \
             ORDER BY started_at DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(run).collect()
    }

    async fn gc_last_scheduled(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MAX(started_at) FROM gc_runs WHERE scheduled = 1")
            .fetch_one(&self.read)
            .await
            .map_err(db)?;
        r_opt(&row)
    }

    async fn cleanup_run_record(&self, run: &CleanupRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO cleanup_runs (repo, core, at, report) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repo) DO UPDATE SET core = excluded.core, at = excluded.at, \
             report = excluded.report",
        )
        .bind(&run.repo)
        .bind(&run.core)
        .bind(run.at)
        .bind(&run.report)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn cleanup_runs(&self, repo: Option<&str>) -> Result<Vec<CleanupRun>> {
        let rows = sqlx::query(
            "SELECT repo, core, at, report FROM cleanup_runs WHERE $1 = '' OR repo = $1 \
             ORDER BY repo",
        )
        .bind(repo.unwrap_or_default().to_owned())
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(CleanupRun {
                    repo: text(r, 0)?,
                    core: text(r, 1)?,
                    at: r.try_get(2).map_err(db)?,
                    report: text(r, 3)?,
                })
            })
            .collect()
    }
}

fn r_opt(row: &AnyRow) -> Result<Option<i64>> {
    row.try_get::<Option<i64>, _>(0).map_err(db)
}
