//! [`ReplicationStore`] on SQL: the `replication_runs` table (migration 9).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db, text, SqlMetadata};
use crate::storage::metadata::replication::{ReplicationRun, ReplicationStore};
use crate::storage::metadata::Result;

fn run(r: &AnyRow) -> Result<ReplicationRun> {
    Ok(ReplicationRun {
        id: text(r, 0)?,
        rule: text(r, 1)?,
        core: text(r, 2)?,
        trigger: text(r, 3)?,
        started_at: r.try_get(4).map_err(db)?,
        report: text(r, 5)?,
    })
}

#[async_trait]
impl ReplicationStore for SqlMetadata {
    async fn replication_run_record(&self, run: &ReplicationRun, keep: u32) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO replication_runs (id, rule, core, trigger, started_at, report) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&run.id)
        .bind(&run.rule)
        .bind(&run.core)
        .bind(&run.trigger)
        .bind(run.started_at)
        .bind(&run.report)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query(
            "DELETE FROM replication_runs WHERE rule = $1 AND id NOT IN \
             (SELECT id FROM replication_runs WHERE rule = $1 \
              ORDER BY started_at DESC, id DESC LIMIT $2)",
        )
        .bind(&run.rule)
        .bind(i64::from(keep))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn replication_runs(&self, rule: &str, limit: u32) -> Result<Vec<ReplicationRun>> {
        let rows = sqlx::query(
            "SELECT id, rule, core, trigger, started_at, report FROM replication_runs \
             WHERE rule = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(rule)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter().map(run).collect()
    }

    async fn replication_last(&self, rule: &str, trigger: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT MAX(started_at) FROM replication_runs WHERE rule = $1 AND trigger = $2",
        )
        .bind(rule)
        .bind(trigger)
        .fetch_one(&self.read)
        .await
        .map_err(db)?;
        row.try_get::<Option<i64>, _>(0).map_err(db)
    }
}
