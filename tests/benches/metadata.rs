//! Metadata benchmark: the same core on SQLite (embedded default) and on PostgreSQL, beside the
//! filesystem-metadata release as the reference, in one run.
//!
//! Figures: pushing 1 000 small images, manifest GET requests/s and p99 (wrk, 16 connections),
//! listing the 10 000 tags of one image (paged by 100 and whole), and `_catalog` of 10 000
//! images (paged by 100 and whole), with each server's CPU time.
//!
//! The reference is a `berth-core` built from the release before the metadata database:
//! `BERTH_FS_CORE=/path/to/old/berth-core` (e.g. `git worktree add /tmp/fs <commit>` and
//! `cargo build --release -p berth-core` there). Without it that column is left out. Needs
//! release binaries (`cargo build --release --workspace`), `wrk` and `postgresql`.

use std::path::PathBuf;
use std::time::Instant;

use berth_tests::bench::{print_table, wrk};
use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::postgres::Postgres;
use berth_tests::proc;

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";
const IMAGES: usize = 1000;
const TAGS: usize = 10_000;
const CATALOG: usize = 10_000;

struct Setup {
    name: &'static str,
    core: Core,
}

fn config(data: &std::path::Path, metadata: &str) -> String {
    format!(
        "storage:\n  root: {}\n{metadata}main: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display()
    )
}

fn start(name: &'static str, binary: PathBuf, metadata: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(&dir.path().join("data"), metadata);
    Setup {
        name,
        core: Core::start_binary(binary, dir, &text),
    }
}

/// A blob pushed anonymously; its digest.
fn pushed_blob(addr: &str, image: &str, data: &[u8]) -> String {
    let r = berth_tests::registry::push_blob(addr, image, data).expect("push blob");
    assert_eq!(r.status, 201);
    http::digest(data)
}

fn manifest(config: &str, config_len: usize, layer: &str, layer_len: usize) -> Vec<u8> {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_len}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":{layer_len}}}]}}"#
    )
    .into_bytes()
}

fn put(addr: &str, image: &str, reference: &str, body: &[u8]) {
    let r = request(
        addr,
        "PUT",
        &format!("/v2/{image}/manifests/{reference}"),
        &[("Content-Type", OCI)],
        body,
    )
    .expect("put manifest");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// Seconds and server CPU seconds spent in `f`.
fn timed(pid: u32, f: impl FnOnce()) -> (f64, f64) {
    let (t, c) = (Instant::now(), proc::cpu_seconds(pid));
    f();
    (t.elapsed().as_secs_f64(), proc::cpu_seconds(pid) - c)
}

/// Follows `Link: <...>; rel="next"` from `first` to the end; returns the entries seen.
fn walk_pages(addr: &str, first: &str, key: &str) -> usize {
    let mut next = Some(first.to_owned());
    let mut seen = 0;
    while let Some(path) = next {
        let r = request(addr, "GET", &path, &[], b"").expect("page");
        assert_eq!(r.status, 200);
        seen += r.json()[key].as_array().map_or(0, Vec::len);
        next = r
            .header("link")
            .and_then(|l| l.split_once('<'))
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(url, _)| url.to_owned());
    }
    seen
}

fn measure(s: &Setup) -> Vec<f64> {
    let addr = s.core.connector("hosted").to_owned();
    let pid = s.core.pid().expect("pid");
    let mut out = Vec::new();
    // 1 000 small images, each its own config and layer.
    let (secs, cpu) = timed(pid, || {
        for i in 0..IMAGES {
            let image = format!("small/img{i:04}");
            let c = format!("{{\"n\":{i}}}");
            let l = format!("layer {i}");
            let cd = pushed_blob(&addr, &image, c.as_bytes());
            let ld = pushed_blob(&addr, &image, l.as_bytes());
            put(&addr, &image, "v1", &manifest(&cd, c.len(), &ld, l.len()));
        }
    });
    out.push(IMAGES as f64 / secs);
    out.push(cpu * 1000.0 / IMAGES as f64);
    let w = wrk(&format!("http://{addr}/v2/small/img0001/manifests/v1"), OCI);
    out.push(w.rps);
    out.push(w.p99_ms);
    // 10 000 tags on one image.
    let c = b"{\"tags\":1}";
    let l = b"tag layer";
    let cd = pushed_blob(&addr, "many/tags", c);
    let ld = pushed_blob(&addr, "many/tags", l);
    let m = manifest(&cd, c.len(), &ld, l.len());
    for i in 0..TAGS {
        put(&addr, "many/tags", &format!("t{i:05}"), &m);
    }
    let (paged, paged_cpu) = timed(pid, || {
        assert_eq!(
            walk_pages(&addr, "/v2/many/tags/tags/list?n=100", "tags"),
            TAGS
        );
    });
    let (whole, _) = timed(pid, || {
        let r = request(&addr, "GET", "/v2/many/tags/tags/list", &[], b"").expect("tags");
        assert_eq!(r.json()["tags"].as_array().map_or(0, Vec::len), TAGS);
    });
    out.extend([paged * 1000.0, paged_cpu * 1000.0, whole * 1000.0]);
    // 10 000 images in the catalog (the 1 000 above and 9 000 more, mounted and tagged).
    for i in IMAGES..CATALOG {
        let image = format!("small/img{i:05}");
        let r = request(
            &addr,
            "POST",
            &format!("/v2/{image}/blobs/uploads/?mount={cd}&from=many/tags"),
            &[],
            b"",
        )
        .expect("mount");
        assert_eq!(r.status, 201);
        let r = request(
            &addr,
            "POST",
            &format!("/v2/{image}/blobs/uploads/?mount={ld}&from=many/tags"),
            &[],
            b"",
        )
        .expect("mount");
        assert_eq!(r.status, 201);
        put(&addr, &image, "v1", &m);
    }
    let (paged, paged_cpu) = timed(pid, || {
        let n = walk_pages(&s.core.main, "/v2/_catalog?n=100", "repositories");
        assert!(n >= CATALOG, "{n}");
    });
    let (whole, _) = timed(pid, || {
        let r = request(&s.core.main, "GET", "/v2/_catalog", &[], b"").expect("catalog");
        assert!(r.json()["repositories"].as_array().map_or(0, Vec::len) >= CATALOG);
    });
    out.extend([paged * 1000.0, paged_cpu * 1000.0, whole * 1000.0]);
    out.push(proc::rss_mib(pid));
    out
}

fn main() {
    let pg = Postgres::start();
    let current = berth_tests::bin("berth-core");
    let mut setups = Vec::new();
    if let Some(old) = std::env::var_os("BERTH_FS_CORE") {
        setups.push(start("fs (reference)", PathBuf::from(old), ""));
    } else {
        println!("BERTH_FS_CORE not set: the filesystem-metadata reference is left out");
    }
    setups.push(start("sqlite", current.clone(), ""));
    let pg_metadata = format!("  metadata:\n    postgres: {{ url: \"{}\" }}\n", pg.url);
    setups.push(start("postgresql", current, &pg_metadata));
    let mut columns = Vec::new();
    let mut results = Vec::new();
    for s in &setups {
        println!("measuring {} ...", s.name);
        columns.push(s.name);
        results.push(measure(s));
    }
    let names = [
        "push 1 000 small images (images/s)",
        "  server CPU per image (ms)",
        "manifest GET, 16 conns (req/s)",
        "manifest GET p99 (ms)",
        "10 000 tags, pages of 100 (ms)",
        "  server CPU (ms)",
        "10 000 tags, one list (ms)",
        "_catalog 10 000, pages of 100 (ms)",
        "  server CPU (ms)",
        "_catalog 10 000, one list (ms)",
        "RSS at the end (MiB)",
    ];
    let rows: Vec<(&str, Vec<f64>)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, results.iter().map(|r| r[i]).collect()))
        .collect();
    print_table(&columns, &rows);
}
