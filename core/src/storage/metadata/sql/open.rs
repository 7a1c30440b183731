//! Connecting and migrating. Migrations are the numbered files in `core/migrations/`, applied
//! in order at start inside a transaction each, and recorded in `berth_schema` (on PostgreSQL
//! under an advisory lock, so cores starting together do not race).

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::Row;

use super::{db, Backend, Kind, SqlMetadata};
use crate::storage::metadata::{now, MetadataError, Result};

/// The migrations, in order. Never edit one that has shipped: add the next.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../../migrations/0001_metadata.sql")),
    (2, include_str!("../../../../migrations/0002_lifecycle.sql")),
    (3, include_str!("../../../../migrations/0003_settings.sql")),
    (4, include_str!("../../../../migrations/0004_sessions.sql")),
    (5, include_str!("../../../../migrations/0005_cluster.sql")),
    (6, include_str!("../../../../migrations/0006_millis.sql")),
    (
        7,
        include_str!("../../../../migrations/0007_uses_and_runs.sql"),
    ),
    (
        8,
        include_str!("../../../../migrations/0008_directory_logins.sql"),
    ),
    (
        9,
        include_str!("../../../../migrations/0009_replication_runs.sql"),
    ),
];

/// Read connections to an SQLite file (WAL: they never wait for the writer).
const SQLITE_READERS: u32 = 4;
/// Connections to PostgreSQL per core.
const POSTGRES_POOL: u32 = 16;
/// How long a request waits for a PostgreSQL connection: while the server is gone, requests
/// fail (503, `Retry-After`) after this instead of hanging, and the edge sends them elsewhere.
/// A pool exhausted by load answers the same way, which is the back-pressure wanted.
const POSTGRES_ACQUIRE: Duration = Duration::from_secs(3);
/// How long an SQLite statement waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 5000;
/// The advisory lock id that serialises migrations on PostgreSQL.
const MIGRATION_LOCK: i64 = 0x0062_6572_7468; // "berth"

/// Percent-encodes a URL userinfo part (a password may contain anything).
fn encode_userinfo(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `postgres://user@host/db` with the password put in.
fn with_password(url: &str, password: &str) -> std::result::Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "the PostgreSQL URL needs a scheme (postgres://)".to_owned())?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (user.split(':').next().unwrap_or(user), host),
        None => ("", authority),
    };
    Ok(format!(
        "{scheme}://{user}:{}@{host}/{path}",
        encode_userinfo(password)
    ))
}

impl SqlMetadata {
    /// Connects (creating an SQLite file if needed) and applies pending migrations.
    pub async fn open(backend: &Backend) -> Result<SqlMetadata> {
        sqlx::any::install_default_drivers();
        let store = match backend {
            Backend::Sqlite(path) => Self::open_sqlite(path).await?,
            Backend::Memory => {
                // One connection: every in-memory connection would be a database of its own.
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect("sqlite::memory:")
                    .await
                    .map_err(db)?;
                SqlMetadata {
                    read: pool.clone(),
                    write: pool,
                    kind: Kind::Sqlite,
                }
            }
            Backend::Postgres { url, password } => {
                let url = match password {
                    Some(p) => with_password(url, p).map_err(MetadataError::Database)?,
                    None => url.clone(),
                };
                let pool = AnyPoolOptions::new()
                    .max_connections(POSTGRES_POOL)
                    .acquire_timeout(POSTGRES_ACQUIRE)
                    .connect(&url)
                    .await
                    .map_err(db)?;
                SqlMetadata {
                    read: pool.clone(),
                    write: pool,
                    kind: Kind::Postgres,
                }
            }
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn open_sqlite(path: &Path) -> Result<SqlMetadata> {
        let url = sqlite_url(path)
            .map_err(|e| MetadataError::Database(format!("SQLite file {}: {e}", path.display())))?;
        let pool = |max: u32| {
            AnyPoolOptions::new()
                .max_connections(max)
                .acquire_timeout(Duration::from_secs(30))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in [
                            "PRAGMA journal_mode = WAL".to_owned(),
                            "PRAGMA synchronous = NORMAL".to_owned(),
                            format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"),
                        ] {
                            sqlx::query(sqlx::AssertSqlSafe(pragma))
                                .execute(&mut *conn)
                                .await?;
                        }
                        Ok(())
                    })
                })
        };
        // The writer first: it creates the file and switches it to WAL.
        let write = pool(1).connect(&url).await.map_err(db)?;
        let read = pool(SQLITE_READERS).connect(&url).await.map_err(db)?;
        Ok(SqlMetadata {
            read,
            write,
            kind: Kind::Sqlite,
        })
    }

    /// Applies the migrations not yet recorded, each in its own transaction.
    async fn migrate(&self) -> Result<()> {
        for (version, sql) in MIGRATIONS {
            let fail = |e: sqlx::Error| MetadataError::Migration {
                version: *version,
                reason: e.to_string(),
            };
            let mut tx = self.write.begin().await.map_err(fail)?;
            if self.kind == Kind::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            // Under the lock: concurrent `IF NOT EXISTS` creations still collide on PostgreSQL.
            sqlx::query(
                "CREATE TABLE IF NOT EXISTS berth_schema (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
            let done: Option<i64> =
                sqlx::query("SELECT version FROM berth_schema WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?
                    .map(|r| r.try_get(0))
                    .transpose()
                    .map_err(fail)?;
            if done.is_some() {
                continue;
            }
            for statement in statements(sql) {
                let statement = match self.kind {
                    // Byte order for every text column, as SQLite sorts.
                    Kind::Postgres => statement.replace(" TEXT", " TEXT COLLATE \"C\""),
                    Kind::Sqlite => statement,
                };
                sqlx::query(sqlx::AssertSqlSafe(statement))
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            sqlx::query("INSERT INTO berth_schema (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(now())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            tx.commit().await.map_err(fail)?;
            tracing::info!(version, "metadata schema migrated");
        }
        self.refuse_newer_schema().await
    }

    /// A database a newer release migrated may mean things this one does not know (times in
    /// other units, rows it would not clean up): refuse it rather than misread it.
    async fn refuse_newer_schema(&self) -> Result<()> {
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        let found: i64 = sqlx::query("SELECT MAX(version) FROM berth_schema")
            .fetch_one(&self.write)
            .await
            .map_err(db)?
            .try_get(0)
            .map_err(db)?;
        if found > known {
            return Err(MetadataError::NewerSchema { found, known });
        }
        Ok(())
    }
}

/// `sqlite:///absolute/path?mode=rwc` for a file (created with its directory if missing): the
/// URL form wants an absolute path (a relative `deploy/../data` would be read as a host), and
/// the characters URLs reserve are escaped.
fn sqlite_url(path: &Path) -> std::io::Result<String> {
    let absolute = std::path::absolute(path)?;
    if let Some(dir) = absolute.parent() {
        crate::storage::private::dir(dir)?;
    }
    crate::storage::private::database_file(&absolute)?;
    let text = absolute.to_string_lossy();
    let escaped: String = text
        .chars()
        .map(|c| match c {
            '%' | '?' | '#' | ' ' => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect();
    Ok(format!("sqlite://{escaped}?mode=rwc"))
}

/// The statements of a migration file: `;`-separated, `--` comments dropped.
fn statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_encoded_into_the_url() {
        assert_eq!(
            with_password("postgres://berth@db:5432/berth", "p@ss:w/rd").unwrap(),
            "postgres://berth:p%40ss%3Aw%2Frd@db:5432/berth"
        );
        assert!(with_password("db:5432", "x").is_err());
    }

    #[test]
    fn relative_sqlite_paths_become_absolute_urls() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::env::current_dir().unwrap();
        let rel = pathdiff(dir.path(), &cwd).join("sub dir/../meta#1.db");
        let url = sqlite_url(&rel).unwrap();
        assert!(url.starts_with("sqlite:///"), "{url}");
        assert!(
            url.contains("meta%231.db") && url.contains("sub%20dir"),
            "{url}"
        );
    }

    /// `target` relative to `base` (enough for a test: both absolute, no symlinks).
    fn pathdiff(target: &Path, base: &Path) -> std::path::PathBuf {
        let ups = base.components().count().saturating_sub(1);
        let mut p = std::path::PathBuf::new();
        for _ in 0..ups {
            p.push("..");
        }
        p.join(target.strip_prefix("/").unwrap())
    }

    #[tokio::test]
    async fn a_database_of_a_newer_release_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metadata.db");
        let store = SqlMetadata::open(&Backend::Sqlite(file.clone()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO berth_schema (version, applied_at) VALUES (99, 0)")
            .execute(&store.write)
            .await
            .unwrap();
        drop(store);
        let e = SqlMetadata::open(&Backend::Sqlite(file))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(e, MetadataError::NewerSchema { found: 99, .. }),
            "{e}"
        );
    }

    #[test]
    fn migration_files_split_into_statements() {
        let s = statements("-- c\nCREATE TABLE a (x TEXT); -- t\n\nCREATE INDEX i ON a (x);\n");
        assert_eq!(
            s,
            vec!["CREATE TABLE a (x TEXT)", "CREATE INDEX i ON a (x)"]
        );
    }
}
