//! The MetadataStore contract suite against every backend, one test per case and backend
//! (`sqlite::uploads`, `postgres::uploads`, ...): SQLite in a temporary file, and a real
//! PostgreSQL server started for the tests (shared by the cases that run at once, a database
//! of its own per case).

// Test code panics on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex, Weak};

use berth_core::storage::metadata::sql::{Backend, SqlMetadata};
use berth_core::storage::metadata::{suite, MetadataStore};
use berth_tests::postgres::Postgres;

mod sqlite {
    use super::*;

    berth_core::metadata_contract!(
        tests | case | {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("metadata.db");
            let store = SqlMetadata::open(&Backend::Sqlite(path)).await.unwrap();
            (dir, Arc::new(store))
        }
    );
}

/// The running server while some case holds it; stopped when the last lets go.
static POSTGRES: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());

async fn postgres() -> Arc<Postgres> {
    tokio::task::spawn_blocking(|| {
        let mut held = POSTGRES.lock().unwrap_or_else(|p| p.into_inner());
        held.upgrade().unwrap_or_else(|| {
            let pg = Arc::new(Postgres::start());
            *held = Arc::downgrade(&pg);
            pg
        })
    })
    .await
    .unwrap()
}

mod postgres {
    use super::*;

    berth_core::metadata_contract!(
        tests | case | {
            let pg = postgres().await;
            let url = tokio::task::spawn_blocking({
                let (pg, case) = (pg.clone(), case.to_owned());
                move || pg.database(&case)
            })
            .await
            .unwrap();
            let store = SqlMetadata::open(&Backend::Postgres {
                url,
                password: None,
            })
            .await
            .unwrap();
            (pg, Arc::new(store))
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_the_contract_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.db");
    let store: Arc<dyn MetadataStore> = Arc::new(
        SqlMetadata::open(&Backend::Sqlite(path.clone()))
            .await
            .unwrap(),
    );
    suite::listings_page_in_the_store(store.clone(), "first").await;
    drop(store);
    // Reopening migrates nothing twice and keeps what was written; then every case in turn.
    let again: Arc<dyn MetadataStore> =
        Arc::new(SqlMetadata::open(&Backend::Sqlite(path)).await.unwrap());
    let repo = "first-listing".parse().unwrap();
    let page = berth_core::storage::metadata::Page::all();
    assert_eq!(again.images(&repo, &page).await.unwrap().len(), 3);
    suite::run(again, "second").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrations_do_not_race_when_two_cores_start_at_once() {
    let pg = postgres().await;
    let url = tokio::task::spawn_blocking({
        let pg = pg.clone();
        move || pg.database("twice")
    })
    .await
    .unwrap();
    let b = Backend::Postgres {
        url,
        password: None,
    };
    let (x, y) = tokio::join!(SqlMetadata::open(&b), SqlMetadata::open(&b));
    x.unwrap();
    y.unwrap();
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
