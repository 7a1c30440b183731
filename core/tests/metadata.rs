//! The MetadataStore contract suite against every backend: SQLite in a temporary file and a
//! real PostgreSQL server started for the test.

// Test code panics on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use berth_core::storage::metadata::sql::{Backend, SqlMetadata};
use berth_core::storage::metadata::{suite, MetadataStore};
use berth_tests::postgres::Postgres;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fulfils_the_contract_and_keeps_it_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let store: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadata::open(&Backend::Sqlite(path.clone()))
            .await
            .unwrap(),
    );
    suite::run(store.clone(), "first").await;
    drop(store);
    // Reopening migrates nothing twice and keeps what was written.
    let again: Arc<dyn MetadataStore> =
        Arc::new(SqlMetadata::open(&Backend::Sqlite(path)).await.unwrap());
    let repo = "first-listing".parse().unwrap();
    let page = berth_core::storage::metadata::Page::all();
    assert_eq!(again.images(&repo, &page).await.unwrap().len(), 3);
    suite::run(again, "second").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fulfils_the_contract() {
    let pg = tokio::task::spawn_blocking(Postgres::start).await.unwrap();
    let backend = Backend::Postgres {
        url: pg.url.clone(),
        password: None,
    };
    let store: Arc<dyn MetadataStore> = Arc::new(SqlMetadata::open(&backend).await.unwrap());
    suite::run(store.clone(), "pg").await;
    // Two cores starting at once on one database: migrations do not race.
    let url = pg.database("twice");
    let b = Backend::Postgres {
        url,
        password: None,
    };
    let (x, y) = tokio::join!(SqlMetadata::open(&b), SqlMetadata::open(&b));
    x.unwrap();
    y.unwrap();
    drop(store);
    drop(pg);
}

/// run-local.sh's default config names the storage root as `deploy/../.berth/data`: a relative
/// path with `..` (once refused as "unable to open database file").
#[tokio::test]
async fn sqlite_opens_under_a_root_with_dot_dot() {
    // Not by changing the working directory: that is process-wide, and a command another test
    // spawns meanwhile (psql) would start in a directory about to be deleted. Relative paths
    // are covered by `relative_sqlite_paths_become_absolute_urls`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("deploy")).unwrap();
    let path = dir.path().join("deploy/../.berth/data/metadata.db");
    SqlMetadata::open(&Backend::Sqlite(path)).await.unwrap();
    assert!(dir.path().join(".berth/data/metadata.db").exists());
}
