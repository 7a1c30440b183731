//! Scale-out on S3, against CNCF Distribution 2.8 with its s3 driver, all on one Garage node
//! (a fresh one per registry, so every run starts from an empty bucket): skopeo pushes and
//! pulls a 5 × 100 MiB image, then four such images at once. Berth runs as one core straight
//! (plain HTTP, like Distribution), one core behind the edge (TLS) and three cores on one
//! PostgreSQL behind the edge (and so again with `redirect: true`, as Distribution redirects
//! blob GETs to the bucket by default). Prints throughput and server CPU per MiB: the registry's own
//! processes (cores, edge, PostgreSQL), the S3 server's, and both together — what a deployment
//! pays per byte. Needs Garage (see `tests/src/garage.rs`), `docker-registry`, skopeo,
//! PostgreSQL, and a release build (`cargo build --release --workspace`); run with
//! `cargo bench -p berth-tests --bench scale` (`BERTH_BENCH_ROUNDS`, default 2;
//! `BERTH_BENCH_ONLY=distribution,berth-1` for some targets: see `main`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::bench::Distribution;
use berth_tests::blobs::{header, path_of, send, start_upload, with_digest, Server};
use berth_tests::core::{stores_config, Core};
use berth_tests::edge::{front_edge, Edge};
use berth_tests::garage::Garage;
use berth_tests::image::{write_layout, Pattern};
use berth_tests::postgres::Postgres;
use berth_tests::proc;
use berth_tests::tools::{run, skopeo};

const MIB: f64 = 1024.0 * 1024.0;
const LAYER: usize = 100 << 20;
const LAYERS: usize = 5;
const PARALLEL: usize = 4;

/// A registry under test and everything it runs on, stopped on drop.
struct Target {
    name: String,
    addr: String,
    /// `--dest-cert-dir` for a TLS front; `None`: plain HTTP.
    trust: Option<PathBuf>,
    /// The registry's processes (cores, edge); PostgreSQL's postmaster counted as a tree.
    pids: Vec<u32>,
    db: Option<u32>,
    s3: Garage,
    _keep: Vec<Box<dyn std::any::Any>>,
}

impl Target {
    fn cpu(&self) -> (f64, f64) {
        let own: f64 = self.pids.iter().map(|p| proc::cpu_seconds(*p)).sum::<f64>()
            + self.db.map_or(0.0, proc::tree_cpu_seconds);
        (own, proc::cpu_seconds(self.s3.pid()))
    }

    fn tls_args(&self, flag: &str) -> Vec<String> {
        match &self.trust {
            Some(dir) => vec![format!("--{flag}-cert-dir={}", dir.display())],
            None => vec![format!("--{flag}-tls-verify=false")],
        }
    }
}

fn distribution() -> Target {
    let s3 = Garage::start();
    let d = Distribution::start_s3(&s3.distribution_config("distribution"));
    Target {
        name: "Distribution 2.8".into(),
        addr: d.addr.clone(),
        trust: None,
        pids: vec![d.child.id()],
        db: None,
        s3,
        _keep: vec![Box::new(d)],
    }
}

fn core_config(dir: &Path, metadata: &str, blobs: &str) -> String {
    stores_config(&dir.join("data"), metadata, blobs)
}

/// `cores` Berth cores on one Garage (and, for more than one, one PostgreSQL); behind the
/// edge with TLS, or straight; `more` keys for `storage.blobs.s3`.
fn berth(cores: usize, edge: bool, more: &str) -> Target {
    let s3 = Garage::start();
    let blobs = s3.berth_config_with("berth", more);
    let mut keep: Vec<Box<dyn std::any::Any>> = Vec::new();
    let pg = (cores > 1).then(Postgres::start);
    let metadata = pg.as_ref().map_or(String::new(), |pg| {
        format!("{{ postgres: {{ url: \"{}\" }} }}", pg.url)
    });
    let started: Vec<Core> = (0..cores)
        .map(|_| {
            let dir = tempfile::tempdir().expect("tempdir");
            let text = core_config(dir.path(), &metadata, &blobs);
            Core::start_in(dir, &text)
        })
        .collect();
    let mut pids: Vec<u32> = started.iter().map(|c| c.pid().expect("pid")).collect();
    let upstreams: Vec<&str> = started.iter().map(|c| c.connector("hosted")).collect();
    let (addr, trust) = if edge {
        let pki = tempfile::tempdir().expect("tempdir");
        let (e, trust): (Edge, PathBuf) = front_edge(&upstreams, pki.path());
        pids.push(e.pid());
        let addr = format!("localhost:{}", e.ports[0]);
        keep.push(Box::new(e));
        keep.push(Box::new(pki));
        (addr, Some(trust))
    } else {
        (upstreams[0].to_owned(), None)
    };
    let db = pg.as_ref().map(Postgres::pid);
    let mut name = match (cores, edge) {
        (1, false) => "Berth, 1 core".to_owned(),
        (n, _) => format!("Berth, {n} core{} + edge", if n == 1 { "" } else { "s" }),
    };
    if more.contains("redirect: true") {
        name.push_str(", redirect");
    }
    if more.contains("sign_payload: false") {
        name.push_str(", unsigned");
    }
    keep.push(Box::new(started));
    if let Some(pg) = pg {
        keep.push(Box::new(pg));
    }
    Target {
        name,
        addr,
        trust,
        pids,
        db,
        s3,
        _keep: keep,
    }
}

/// A target as `BERTH_BENCH_ONLY` names it, and how to start it.
type Choice = (&'static str, fn() -> Target);

/// One phase's figures: MiB/s and CPU ms per MiB (registry, S3 server).
#[derive(Clone, Copy, Default)]
struct Phase {
    mibs: f64,
    own_ms: f64,
    s3_ms: f64,
}

/// Runs `work` (moving `mib` MiB) and charges the target's CPU to it.
fn measure(t: &Target, mib: f64, work: impl FnOnce()) -> Phase {
    let (o0, s0) = t.cpu();
    let started = Instant::now();
    work();
    let secs = started.elapsed().as_secs_f64();
    // Let the last requests' accounting settle (a process's CPU is read from /proc).
    std::thread::sleep(Duration::from_millis(100));
    let (o1, s1) = t.cpu();
    Phase {
        mibs: mib / secs,
        own_ms: (o1 - o0) * 1000.0 / mib,
        s3_ms: (s1 - s0) * 1000.0 / mib,
    }
}

fn spawn_copy(args: Vec<String>) -> Child {
    skopeo()
        .arg("copy")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("skopeo")
}

fn wait_all(children: Vec<Child>) {
    for c in children {
        let out = c.wait_with_output().expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// skopeo pushes (`push`) or pulls each layout as `bench/<i>:v1`, all at once; `i` counts
/// from `first`.
fn copy_all(t: &Target, layouts: &[PathBuf], first: usize, push: bool, scratch: &Path) {
    let children = layouts
        .iter()
        .enumerate()
        .map(|(i, layout)| {
            let i = first + i;
            let remote = format!("docker://{}/bench/{i}:v1", t.addr);
            let local = format!("oci:{}:v1", layout.display());
            let mut args = t.tls_args(if push { "dest" } else { "src" });
            if push {
                args.extend([local, remote]);
            } else {
                let out = scratch.join(format!("pull-{i}"));
                let _ = std::fs::remove_dir_all(&out);
                args.extend([remote, format!("dir:{}", out.display())]);
            }
            spawn_copy(args)
        })
        .collect();
    wait_all(children);
}

/// The four phases on one target: push and pull of one image, then of `PARALLEL` at once.
fn bench(t: &Target, layouts: &[PathBuf], scratch: &Path) -> [Phase; 4] {
    let one = (LAYER * LAYERS) as f64 / MIB;
    let all = one * PARALLEL as f64;
    let (first, rest) = layouts.split_at(1);
    let push1 = measure(t, one, || copy_all(t, first, 0, true, scratch));
    let pull1 = measure(t, one, || copy_all(t, first, 0, false, scratch));
    // The first image is stored already (pushing it again would be a cheap no-op that
    // flatters the figure): the parallel push is of the other three, the parallel pull of all.
    let pushn = measure(t, all - one, || copy_all(t, rest, 1, true, scratch));
    let pulln = measure(t, all, || copy_all(t, layouts, 0, false, scratch));
    [push1, pull1, pushn, pulln]
}

fn layouts(root: &Path) -> Vec<PathBuf> {
    (0..PARALLEL)
        .map(|i| {
            let dir = root.join(format!("image-{i}"));
            write_layout(
                &dir,
                "v1",
                &[("linux", "amd64")],
                &[LAYER; LAYERS],
                7000 + i as u64,
            );
            dir
        })
        .collect()
}

fn print(rows: &[(String, [Phase; 4])]) {
    let phases = [
        "push 1 × 500 MiB",
        "pull 1 × 500 MiB",
        "push 3 × 500 MiB at once",
        "pull 4 × 500 MiB at once",
    ];
    for (p, phase) in phases.iter().enumerate() {
        println!("\n{phase}");
        println!(
            "  {:<34} {:>8} {:>14} {:>12} {:>12}",
            "", "MiB/s", "CPU ms/MiB", "registry", "S3 server"
        );
        for (name, f) in rows {
            let f = f[p];
            println!(
                "  {name:<34} {:>8.1} {:>14.2} {:>12.2} {:>12.2}",
                f.mibs,
                f.own_ms + f.s3_ms,
                f.own_ms,
                f.s3_ms
            );
        }
    }
}

/// A 1 GiB upload sent to one core in one PATCH, committed by the same core (which kept the
/// running SHA-256) and by another (which reads the parts back to hash them): the cost of
/// finishing an upload on a core that did not receive it.
fn rehash() {
    let s3 = Garage::start();
    let pg = Postgres::start();
    let metadata = format!("{{ postgres: {{ url: \"{}\" }} }}", pg.url);
    let cores: Vec<Core> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().expect("tempdir");
            let text = core_config(dir.path(), &metadata, &s3.berth_config("berth"));
            Core::start_in(dir, &text)
        })
        .collect();
    let servers: Vec<Server> = cores
        .iter()
        .map(|c| Server {
            name: "berth-core",
            addr: c.connector("hosted").to_owned(),
            pid: c.pid().expect("pid"),
        })
        .collect();
    let mut data = vec![0u8; 1 << 30];
    Pattern::fill_at(0, &mut data);
    println!("\ncommit of a 1 GiB upload received by core 1 (one PATCH)");
    for (round, (label, committer)) in [("by core 1", 0), ("by core 2", 1)].into_iter().enumerate()
    {
        data[..8].copy_from_slice(&(round as u64).to_le_bytes());
        let digest = berth_tests::http::digest(&data);
        let path = start_upload(&servers[0], "bench/rehash");
        let (status, h) = send(&servers[0].addr, "PATCH", &path, &[], &[&data]);
        assert_eq!(status, 202, "PATCH");
        let path = path_of(header(&h, "location"), &servers[0].addr);
        let cpu = || -> f64 {
            servers
                .iter()
                .map(|s| proc::cpu_seconds(s.pid))
                .sum::<f64>()
                + proc::cpu_seconds(s3.pid())
        };
        let (c0, t0) = (cpu(), Instant::now());
        let (status, _) = send(
            &servers[committer].addr,
            "PUT",
            &with_digest(&path, &digest),
            &[],
            &[],
        );
        assert_eq!(status, 201, "commit");
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "  {label:<10} {secs:>7.2} s {:>8.2} CPU s (cores + S3 server)",
            cpu() - c0
        );
    }
}

fn main() {
    run(Command::new("skopeo").arg("--version"));
    let rounds: usize = std::env::var("BERTH_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let scratch = tempfile::tempdir().expect("tempdir");
    eprintln!("writing {PARALLEL} images of {LAYERS} × 100 MiB...");
    let images = layouts(scratch.path());
    let targets: [Choice; 6] = [
        ("distribution", distribution),
        ("berth-1", || berth(1, false, "")),
        ("berth-1-edge", || berth(1, true, "")),
        ("berth-3-edge", || berth(3, true, "")),
        // Distribution redirects blob GETs to the bucket by default; Berth when told to.
        ("berth-3-edge-redirect", || {
            berth(3, true, ", redirect: true")
        }),
        // Distribution signs its payloads: this row is Berth on a network it trusts.
        ("berth-1-unsigned", || {
            berth(1, false, ", sign_payload: false")
        }),
    ];
    // BERTH_BENCH_ONLY=distribution,berth-1: some of them (and no rehash figure).
    let only = std::env::var("BERTH_BENCH_ONLY").ok();
    let chosen = |key: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|k| k == key))
    };
    for round in 1..=rounds {
        let mut rows = Vec::new();
        for (_, start) in targets.iter().filter(|(k, _)| chosen(k)) {
            let t = start();
            eprintln!("round {round}: {}...", t.name);
            let figures = bench(&t, &images, scratch.path());
            rows.push((t.name.clone(), figures));
        }
        println!("\n== round {round} of {rounds} (CPU: registry = cores + edge + PostgreSQL)");
        print(&rows);
    }
    if only.is_none() {
        rehash();
    }
}
