//! Statements of the session store.

use async_trait::async_trait;
use sqlx::Row;

use super::{db, text, SqlMetadata};
use crate::storage::metadata::sessions::{DirectoryLogin, SessionRecord, SessionStore, TokenUse};
use crate::storage::metadata::Result;

#[async_trait]
impl SessionStore for SqlMetadata {
    async fn session_open(&self, s: &SessionRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, username, stamp, created_at, expires_at, roles) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id)
        .bind(&s.user)
        .bind(&s.stamp)
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(
            s.roles
                .as_ref()
                .map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into())),
        )
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn session(&self, id: &str) -> Result<Option<SessionRecord>> {
        let row = sqlx::query(
            "SELECT id, username, stamp, created_at, expires_at, roles FROM sessions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(SessionRecord {
                id: text(&r, 0)?,
                user: text(&r, 1)?,
                stamp: text(&r, 2)?,
                created_at: r.try_get(3).map_err(db)?,
                expires_at: r.try_get(4).map_err(db)?,
                roles: r
                    .try_get::<Option<String>, _>(5)
                    .map_err(db)?
                    .map(|t| serde_json::from_str(&t).unwrap_or_default()),
            })
        })
        .transpose()
    }

    async fn session_close(&self, id: &str) -> Result<bool> {
        let gone = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(gone > 0)
    }

    async fn sessions_end(&self, user: &str) -> Result<u64> {
        let gone = sqlx::query("DELETE FROM sessions WHERE username = $1")
            .bind(user)
            .execute(&self.write)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(gone)
    }

    async fn sessions_prune(&self, now_ms: i64) -> Result<u64> {
        let gone = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(&self.write)
            .await
            .map_err(db)?
            .rows_affected();
        Ok(gone)
    }

    async fn token_used(&self, id: &str, at_ms: i64, from: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO token_uses (id, used_at, used_from) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET used_at = excluded.used_at, \
             used_from = excluded.used_from",
        )
        .bind(id)
        .bind(at_ms)
        .bind(from)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn token_uses(&self) -> Result<std::collections::HashMap<String, TokenUse>> {
        let rows = sqlx::query("SELECT id, used_at, used_from FROM token_uses")
            .fetch_all(&self.read)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id = text(r, 0)?;
                let at = r.try_get(1).map_err(db)?;
                Ok((
                    id,
                    TokenUse {
                        at,
                        from: text(r, 2)?,
                    },
                ))
            })
            .collect()
    }

    async fn token_use_forget(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM token_uses WHERE id = $1")
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn directory_login(&self, login: &DirectoryLogin) -> Result<()> {
        let roles = serde_json::to_string(&login.roles).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO directory_logins (username, source, roles, login_at, login_from) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO UPDATE SET \
             source = excluded.source, roles = excluded.roles, login_at = excluded.login_at, \
             login_from = excluded.login_from",
        )
        .bind(&login.user)
        .bind(&login.source)
        .bind(roles)
        .bind(login.at)
        .bind(&login.from)
        .execute(&self.write)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn directory_logins(&self) -> Result<Vec<DirectoryLogin>> {
        let rows = sqlx::query(
            "SELECT username, source, roles, login_at, login_from FROM directory_logins \
             ORDER BY username",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let roles = text(r, 2)?;
                Ok(DirectoryLogin {
                    user: text(r, 0)?,
                    source: text(r, 1)?,
                    roles: serde_json::from_str(&roles).unwrap_or_default(),
                    at: r.try_get(3).map_err(db)?,
                    from: text(r, 4)?,
                })
            })
            .collect()
    }
}
