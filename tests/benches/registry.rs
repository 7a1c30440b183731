//! Registry benchmark: berth-core against CNCF Distribution on the same machine, in one run.
//!
//! Prints push/pull MB/s for a 1 GiB blob (monolithic and chunked), manifest GET requests/s and
//! p99 under 16 connections (wrk), CPU time per MiB and per request for each server, peak RSS,
//! and RSS growth while a 2 GiB blob is pushed. Wall-clock figures swing with machine load;
//! CPU figures hold steadier. Needs `docker-registry` and `wrk` (Debian packages) and a
//! release build of berth-core: `cargo build --release --workspace` first.
//!
//! `BERTH_REFERENCE_CORE=/path/to/berth-core` (e.g. built from the commit before, or with one
//! change taken out) adds a column measured the same way in the same run, so a change is kept
//! only when it pays against its own absence.

use berth_tests::bench::{warm_memory, wrk, Distribution};
use berth_tests::blobs::{
    pull, push_chunked, push_monolithic, send, start_upload, with_digest, Server,
};
use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::image::Pattern;
use berth_tests::proc;

const GIB: usize = 1 << 30;
const MIB: f64 = 1024.0 * 1024.0;

#[derive(Default)]
struct Figures {
    mono_mbs: f64,
    chunked_mbs: f64,
    pull_mbs: f64,
    cpu_ms_per_mib_push: f64,
    sys_ms_per_mib_push: f64,
    cpu_ms_per_mib_pull: f64,
    get_rps: f64,
    get_p99_ms: f64,
    cpu_ms_per_get: f64,
    peak_rss: f64,
    rss_growth_2g: f64,
}

/// Pushes a tiny image and returns the manifest path to hammer.
fn push_manifest(s: &Server) -> String {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = http::digest(config);
    // Distribution 2.8 ignores a single POST's body (202): finish with a PUT, as clients do.
    let path = start_upload(s, "bench/small");
    let (status, _) = send(&s.addr, "PUT", &with_digest(&path, &cd), &[], &[config]);
    assert_eq!(status, 201, "{}: config push", s.name);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()}, "layers": []});
    let r = request(
        &s.addr,
        "PUT",
        "/v2/bench/small/manifests/v1",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        m.to_string().as_bytes(),
    )
    .expect("manifest");
    assert_eq!(
        r.status,
        201,
        "{}: manifest push {}",
        s.name,
        String::from_utf8_lossy(&r.body)
    );
    "/v2/bench/small/manifests/v1".to_owned()
}

fn measure(s: &Server, one: &[u8], two: &[u8], big: &[u8]) -> Figures {
    let mut f = Figures::default();
    let mib = one.len() as f64 / MIB;

    // The pushes write 2 GiB into the page cache: on memory the machine has used (see
    // `warm_memory`), so no server pays the VM's first touch for the others.
    warm_memory(one.len() + two.len());
    let cpu0 = proc::cpu_seconds(s.pid);
    let sys0 = proc::cpu_split(s.pid).1;
    let secs = push_monolithic(s, "bench/mono", one);
    f.mono_mbs = mib / secs;
    let secs = push_chunked(s, "bench/chunked", two);
    f.chunked_mbs = mib / secs;
    f.cpu_ms_per_mib_push = (proc::cpu_seconds(s.pid) - cpu0) * 1000.0 / (2.0 * mib);
    f.sys_ms_per_mib_push = (proc::cpu_split(s.pid).1 - sys0) * 1000.0 / (2.0 * mib);

    let cpu0 = proc::cpu_seconds(s.pid);
    let (secs, got) = pull(s, "bench/mono", &http::digest(one));
    assert!(got >= one.len(), "{}: short pull", s.name);
    f.pull_mbs = mib / secs;
    f.cpu_ms_per_mib_pull = (proc::cpu_seconds(s.pid) - cpu0) * 1000.0 / mib;

    let path = push_manifest(s);
    let cpu0 = proc::cpu_seconds(s.pid);
    let w = wrk(
        &format!("http://{}{path}", s.addr),
        "application/vnd.oci.image.manifest.v1+json",
    );
    f.get_rps = w.rps;
    f.get_p99_ms = w.p99_ms;
    f.cpu_ms_per_get = (proc::cpu_seconds(s.pid) - cpu0) * 1000.0 / w.requests.max(1.0);

    let before = proc::rss_mib(s.pid);
    proc::reset_peak(s.pid);
    push_monolithic(s, "bench/big", big);
    f.rss_growth_2g = proc::peak_rss_mib(s.pid) - before;
    f.peak_rss = proc::peak_rss_mib(s.pid).max(before);
    f
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    eprintln!("generating 1 GiB, 1 GiB and 2 GiB test blobs...");
    let mut one = vec![0u8; GIB];
    Pattern::fill_at(0, &mut one);
    let mut two = one.clone();
    two[..8].copy_from_slice(b"chunked!");
    let mut big = vec![0u8; 2 * GIB];
    Pattern::fill_at(7 << 20, &mut big);

    let core = Core::start();
    let berth = Server {
        name: "berth-core",
        addr: core.connector("hosted").to_owned(),
        pid: core.pid().expect("pid"),
    };
    let reference = std::env::var_os("BERTH_REFERENCE_CORE").map(|binary| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = berth_tests::core::default_config(&dir.path().join("data"));
        Core::start_binary(binary.into(), dir, &config)
    });
    let dist = Distribution::start();
    let distribution = Server {
        name: "distribution",
        addr: dist.addr.clone(),
        pid: dist.child.id(),
    };

    eprintln!("measuring berth-core...");
    let b = measure(&berth, &one, &two, &big);
    let r = reference.as_ref().map(|core| {
        eprintln!("measuring the reference berth-core...");
        let server = Server {
            name: "reference",
            addr: core.connector("hosted").to_owned(),
            pid: core.pid().expect("pid"),
        };
        measure(&server, &one, &two, &big)
    });
    eprintln!("measuring distribution...");
    let d = measure(&distribution, &one, &two, &big);
    print_figures(&b, r.as_ref(), &d);
}

fn print_figures(b: &Figures, r: Option<&Figures>, d: &Figures) {
    let r = r.map(rows);

    println!();
    println!(
        "{:<36} {:>12} {:>12} {:>14} {:>10}",
        "figure", "berth-core", "reference", "distribution", "berth/dist"
    );
    for (i, (name, bv)) in rows(b).into_iter().enumerate() {
        let dv = rows(d)[i].1;
        let rv = r.as_ref().map_or(f64::NAN, |r| r[i].1);
        let ratio = if dv.abs() > f64::EPSILON {
            bv / dv
        } else {
            f64::NAN
        };
        println!("{name:<36} {bv:>12.3} {rv:>12.3} {dv:>14.3} {ratio:>10.2}");
    }
}

/// Each figure with its name, in print order.
fn rows(f: &Figures) -> [(&'static str, f64); 11] {
    [
        ("monolithic push 1 GiB (MB/s)", f.mono_mbs),
        ("chunked push 1 GiB (MB/s)", f.chunked_mbs),
        ("pull 1 GiB (MB/s)", f.pull_mbs),
        ("manifest GET, 16 conns (req/s)", f.get_rps),
        ("manifest GET p99 (ms)", f.get_p99_ms),
        ("server CPU per MiB pushed (ms)", f.cpu_ms_per_mib_push),
        ("  of which kernel (ms)", f.sys_ms_per_mib_push),
        ("server CPU per MiB pulled (ms)", f.cpu_ms_per_mib_pull),
        ("server CPU per manifest GET (ms)", f.cpu_ms_per_get),
        ("peak RSS (MiB)", f.peak_rss),
        ("RSS growth, 2 GiB push (MiB)", f.rss_growth_2g),
    ]
}
