//! Blobs in S3: berth-core on `storage.blobs.s3` (an s3s-fs server) against berth-core on its
//! filesystem, the reference, in one run. Prints push (monolithic and chunked) and pull MB/s
//! for a 256 MiB blob, and CPU per MiB of the registry and the S3 server together (what the
//! deployment pays) and of the registry alone. s3s-fs is slow at GETs (~90 MB/s), so pull rates
//! say more about it than about the registry; the CPU figures are the steady ones.
//! (Distribution's S3 driver cannot be the reference here: it needs ListMultipartUploads,
//! which s3s-fs does not implement.) Needs s3s-fs (see `.ci/run`) and a release build:
//! `cargo build --release --workspace` first.

use berth_tests::blobs::{pull, push_chunked, push_monolithic, Server};
use berth_tests::core::{stores_config, Core};
use berth_tests::http;
use berth_tests::image::Pattern;
use berth_tests::proc;
use berth_tests::s3::S3Server;

const MIB: f64 = 1024.0 * 1024.0;
const SIZE: usize = 256 << 20;

/// One row of the table: its label and how to read it from a run.
type Row = (&'static str, fn(&Figures) -> f64);

#[derive(Default)]
struct Figures {
    mono_mbs: f64,
    chunked_mbs: f64,
    pull_mbs: f64,
    push_total_ms: f64,
    push_registry_ms: f64,
    pull_total_ms: f64,
}

/// CPU seconds of the registry and, when there is one, the S3 server.
fn cpu(s: &Server, store: Option<u32>) -> (f64, f64) {
    let registry = proc::cpu_seconds(s.pid);
    (registry, registry + store.map_or(0.0, proc::cpu_seconds))
}

fn measure(s: &Server, store: Option<u32>, one: &[u8], two: &[u8]) -> Figures {
    let mib = one.len() as f64 / MIB;
    let mut f = Figures::default();
    let (r0, t0) = cpu(s, store);
    f.mono_mbs = mib / push_monolithic(s, "bench/mono", one);
    f.chunked_mbs = mib / push_chunked(s, "bench/chunked", two);
    let (r1, t1) = cpu(s, store);
    f.push_registry_ms = (r1 - r0) * 1000.0 / (2.0 * mib);
    f.push_total_ms = (t1 - t0) * 1000.0 / (2.0 * mib);
    let (secs, got) = pull(s, "bench/mono", &http::digest(one));
    assert!(got >= one.len(), "{}: short pull", s.name);
    f.pull_mbs = mib / secs;
    let (_, t2) = cpu(s, store);
    f.pull_total_ms = (t2 - t1) * 1000.0 / mib;
    f
}

fn main() {
    let mut one = vec![0u8; SIZE];
    Pattern::fill_at(0, &mut one);
    let mut two = one.clone();
    two[..8].copy_from_slice(b"chunked!");

    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = stores_config(&dir.path().join("data"), "", &s3.config("bench"));
    let on_s3 = Core::start_in(dir, &config);
    let on_fs = Core::start();
    let servers = [
        Server {
            name: "berth-core s3",
            addr: on_s3.connector("hosted").to_owned(),
            pid: on_s3.pid().expect("pid"),
        },
        Server {
            name: "berth-core fs",
            addr: on_fs.connector("hosted").to_owned(),
            pid: on_fs.pid().expect("pid"),
        },
    ];
    let mut figures = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        eprintln!("measuring {}...", s.name);
        let store = (i == 0).then(|| s3.pid());
        figures.push(measure(s, store, &one, &two));
    }
    let [b, fs] = [&figures[0], &figures[1]];
    let rows: [Row; 6] = [
        ("monolithic push 256 MiB (MB/s)", |f| f.mono_mbs),
        ("chunked push 256 MiB (MB/s)", |f| f.chunked_mbs),
        ("pull 256 MiB (MB/s)", |f| f.pull_mbs),
        ("CPU per MiB pushed, + S3 server (ms)", |f| f.push_total_ms),
        ("  of which the registry (ms)", |f| f.push_registry_ms),
        ("CPU per MiB pulled, + S3 server (ms)", |f| f.pull_total_ms),
    ];
    println!();
    println!(
        "{:<38} {:>14} {:>14} {:>8}",
        "figure", "berth-core s3", "berth-core fs", "s3/fs"
    );
    for (name, get) in rows {
        let (bv, fv) = (get(b), get(fs));
        let ratio = if fv.abs() > f64::EPSILON {
            bv / fv
        } else {
            f64::NAN
        };
        println!("{name:<38} {bv:>14.3} {fv:>14.3} {ratio:>8.2}");
    }
}
