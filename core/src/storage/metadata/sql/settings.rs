//! Statements of the settings store: run-time settings, their version, and retiring a deleted
//! repository's content.

use async_trait::async_trait;
use sqlx::Row;

use super::{db, text, SqlMetadata};
use crate::oci::RepoName;
use crate::storage::metadata::settings::{Setting, SettingKind, SettingsStore};
use crate::storage::metadata::{now_ms, Actor, Result};

pub(super) async fn bump(tx: &mut super::Tx) -> Result<()> {
    // The version is a text column of berth_state: read, add one, write (inside the writer's
    // transaction, so two changes never give the same number).
    let row = sqlx::query("SELECT value FROM berth_state WHERE name = 'settings_version'")
        .fetch_optional(&mut **tx)
        .await
        .map_err(db)?;
    let current: i64 = match row {
        Some(r) => text(&r, 0)?.parse().unwrap_or(0),
        None => 0,
    };
    sqlx::query(
        "INSERT INTO berth_state (name, value) VALUES ('settings_version', $1) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    )
    .bind((current + 1).to_string())
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl SettingsStore for SqlMetadata {
    async fn settings(&self, kind: SettingKind) -> Result<Vec<Setting>> {
        let rows = sqlx::query(
            "SELECT name, body, actor, updated_at FROM settings WHERE kind = $1 ORDER BY name",
        )
        .bind(kind.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(Setting {
                    name: text(r, 0)?,
                    body: r.try_get(1).map_err(db)?,
                    actor: text(r, 2)?,
                    updated_at: r.try_get(3).map_err(db)?,
                })
            })
            .collect()
    }

    async fn put_setting(
        &self,
        kind: SettingKind,
        name: &str,
        body: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO settings (kind, name, body, actor, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, actor = excluded.actor, \
             updated_at = excluded.updated_at",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(body.map(str::to_owned))
        .bind(actor)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        bump(&mut tx).await?;
        tx.commit().await.map_err(db)
    }

    async fn remove_setting(&self, kind: SettingKind, name: &str) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM settings WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
        bump(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(gone > 0)
    }

    async fn settings_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT value FROM berth_state WHERE name = 'settings_version'")
            .fetch_optional(&self.read)
            .await
            .map_err(db)?;
        Ok(match row {
            Some(r) => text(&r, 0)?.parse().unwrap_or(0),
            None => 0,
        })
    }

    async fn retire_repository(&self, repo: &RepoName, actor: Actor<'_>) -> Result<u64> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO tag_events (repo, image, tag, digest, previous, actor, reason, at) \
             SELECT t.repo, t.image, t.tag, NULL, t.digest, $2, $3, \
             CASE WHEN m.last IS NULL OR m.last < $4 THEN $4 ELSE m.last + 1 END \
             FROM tags t LEFT JOIN (SELECT image, tag, MAX(at) AS last FROM tag_events \
             WHERE repo = $1 GROUP BY image, tag) m ON m.image = t.image AND m.tag = t.tag \
             WHERE t.repo = $1",
        )
        .bind(repo.as_str())
        .bind(actor.name)
        .bind(actor.reason)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM tags WHERE repo = $1")
            .bind(repo.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let trashed = sqlx::query(
            "UPDATE manifests SET deleted_at = $2 WHERE repo = $1 AND deleted_at IS NULL",
        )
        .bind(repo.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db)?
        .rows_affected();
        tx.commit().await.map_err(db)?;
        Ok(trashed)
    }
}
