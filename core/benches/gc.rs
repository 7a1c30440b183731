//! Garbage collection at scale: a store with `BERTH_GC_REFERENCED` referenced blobs (default
//! 200 000; the figure is 1 000 000) and `BERTH_GC_UNREFERENCED` unreferenced ones
//! (default 100 000, real files), on SQLite and on PostgreSQL. Prints the collection's wall
//! time and process CPU, and the p99 of pulls (tag lookups) and pushes (a blob and a manifest)
//! running meanwhile, beside the same load with the collector off — the reference, in the
//! same process.
//!
//! `cargo bench -p berth-core --bench gc`

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::lifecycle::gc::{collect, GcSettings};
use berth_core::oci::Digest;
use berth_core::storage::metadata::sql::Backend;
use berth_core::storage::metadata::{Actor, ManifestRecord, Put};
use berth_core::storage::{Namespace, StorageConfig, Stores};
use bytes::Bytes;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn ns(i: usize) -> Namespace {
    Namespace::new(
        "bench".parse().unwrap(),
        format!("img{}", i % 100).parse().unwrap(),
    )
}

fn record(digest: Digest, blobs: Vec<Digest>) -> ManifestRecord {
    ManifestRecord {
        digest,
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 300,
        subject: None,
        artifact_type: None,
        annotations: None,
        blobs,
        children: vec![],
    }
}

fn put(tag: Option<&berth_core::oci::Tag>) -> Put<'_> {
    Put {
        tag,
        actor: Actor::new("bench", "push"),
        check_references: false,
    }
}

/// Referenced: manifests of 10 blobs each (rows only: the collector never reads their bytes).
/// Unreferenced: real files, linked, then unlinked.
async fn populate(s: &Stores, referenced: usize, unreferenced: usize) {
    let mut tasks = Vec::new();
    for w in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i * 10 < referenced {
                let n = ns(i);
                let blobs: Vec<Digest> = (0..10)
                    .map(|k| Digest::sha256_of(format!("ref-{i}-{k}").as_bytes()))
                    .collect();
                for b in &blobs {
                    s.meta.blob_intent(b).await.unwrap();
                    s.meta.blob_placed(Some(&n), b, 1000).await.unwrap();
                }
                let m = Digest::sha256_of(format!("manifest-{i}").as_bytes());
                s.meta.blob_intent(&m).await.unwrap();
                let tag: berth_core::oci::Tag = format!("t{i}").parse().unwrap();
                s.meta
                    .put_manifest(&n, &record(m, blobs), &put(Some(&tag)))
                    .await
                    .unwrap();
                i += 8;
            }
            let mut j = w;
            while j < unreferenced {
                let bytes = Bytes::from(format!("unreferenced blob {j}"));
                let d = Digest::sha256_of(&bytes);
                let n = ns(j);
                s.meta.blob_intent(&d).await.unwrap();
                s.blobs.put(bytes).await.unwrap();
                s.meta.blob_placed(Some(&n), &d, 20).await.unwrap();
                s.meta.unlink_blob(&n, &d).await.unwrap();
                j += 8;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Pulls and pushes until `stop`; their latencies in ms.
async fn load(s: Stores, stop: Arc<AtomicBool>, seed: usize) -> (Vec<f64>, Vec<f64>) {
    let (mut pulls, mut pushes) = (Vec::new(), Vec::new());
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let n = ns(i);
        let t = Instant::now();
        let tag: berth_core::oci::Tag = format!("t{}", i % 1000).parse().unwrap();
        let _ = s.meta.tagged_manifest(&n, &tag).await.unwrap();
        pulls.push(t.elapsed().as_secs_f64() * 1000.0);
        if i.is_multiple_of(10) {
            let t = Instant::now();
            let bytes = Bytes::from(format!("pushed {seed} {i}"));
            let d = Digest::sha256_of(&bytes);
            s.meta.blob_intent(&d).await.unwrap();
            s.blobs.put(bytes).await.unwrap();
            s.meta.blob_placed(Some(&n), &d, 20).await.unwrap();
            let m = Digest::sha256_of(format!("pushed manifest {seed} {i}").as_bytes());
            s.meta.blob_intent(&m).await.unwrap();
            s.meta
                .put_manifest(&n, &record(m, vec![d]), &put(None))
                .await
                .unwrap();
            pushes.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        i += 1;
    }
    (pulls, pushes)
}

fn p99(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

async fn run(name: &str, config: StorageConfig) {
    let referenced = env("BERTH_GC_REFERENCED", 200_000);
    let unreferenced = env("BERTH_GC_UNREFERENCED", 100_000);
    let s = Stores::open(&config).await.unwrap();
    let t = Instant::now();
    populate(&s, referenced, unreferenced).await;
    eprintln!(
        "{name}: populated {referenced} referenced + {unreferenced} unreferenced in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let settings = GcSettings {
        interval: None,
        grace: Duration::ZERO,
        ..GcSettings::default()
    };
    // The reference: the same load for 5 s without a collection.
    let stop = Arc::new(AtomicBool::new(false));
    let l = tokio::spawn(load(s.clone(), stop.clone(), 1));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let (pulls_ref, pushes_ref) = l.await.unwrap();
    // The collection, with the load running.
    tokio::time::sleep(Duration::from_millis(1100)).await; // grace 0: everything is a second old
    let stop = Arc::new(AtomicBool::new(false));
    let l = tokio::spawn(load(s.clone(), stop.clone(), 2));
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let report = collect(&s, &settings, false).await.unwrap();
    let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    stop.store(true, Ordering::Relaxed);
    let (pulls, pushes) = l.await.unwrap();
    println!("\n{name}: {referenced} referenced, {unreferenced} unreferenced blobs");
    println!("  collection: {wall:.1} s wall, {cpu:.1} s CPU (process, load included), {} blobs and {} links removed, {} bytes freed",
        report.blobs_removed, report.links_removed, report.bytes_freed);
    println!("  {:<28} {:>12} {:>12}", "", "GC off (ref)", "during GC");
    println!(
        "  {:<28} {:>12.2} {:>12.2}",
        "pull p99 (ms)",
        p99(pulls_ref.clone()),
        p99(pulls.clone())
    );
    println!(
        "  {:<28} {:>12.2} {:>12.2}",
        "push p99 (ms)",
        p99(pushes_ref.clone()),
        p99(pushes.clone())
    );
    println!(
        "  {:<28} {:>12} {:>12}",
        "pulls / pushes done",
        format!("{}/{}", pulls_ref.len(), pushes_ref.len()),
        format!("{}/{}", pulls.len(), pushes.len())
    );
    assert!(report.blobs_removed >= unreferenced as u64);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Bench harness arguments (`--bench`) are ignored.
    let dir = tempfile::tempdir().unwrap();
    run("SQLite", StorageConfig::under(dir.path().join("sqlite"))).await;
    if std::env::var("BERTH_GC_SKIP_POSTGRES").is_err() {
        let pg = tokio::task::spawn_blocking(berth_tests::postgres::Postgres::start)
            .await
            .unwrap();
        let mut config = StorageConfig::under(dir.path().join("pg"));
        config.metadata = Backend::Postgres {
            url: pg.url.clone(),
            password: None,
        };
        run("PostgreSQL", config).await;
        drop(pg);
    }
}
