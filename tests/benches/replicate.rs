//! Replication benchmark: 20 images (`BERTH_REPL_IMAGES`), 1 GiB in all (`BERTH_REPL_MIB`), in
//! a Berth hosted repository, copied to CNCF Distribution on the same box by a Berth push rule
//! and, beside it in the same run, by `skopeo sync` to a second, empty Distribution. Prints
//! wall time, MiB/s and the CPU of every process taking part: for Berth the core (reading,
//! hashing nothing twice, sending) and the destination; for skopeo skopeo itself, the core
//! serving its reads, and the destination. Needs release binaries, `docker-registry`, skopeo.

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::bench::{print_table, Distribution};
use berth_tests::core::Core;
use berth_tests::http::{digest, request};
use berth_tests::image::Noise;
use berth_tests::proc;
use berth_tests::registry::{oci_manifest, put_manifest};

const MIB: f64 = 1024.0 * 1024.0;

fn env(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Pushes `images` images of one `layer`-byte layer each into `addr`'s `bench/imgN:v1`.
fn seed(addr: &str, images: usize, layer: usize) {
    let mut noise = Noise::new(42);
    let mut buf = vec![0u8; layer];
    for i in 0..images {
        noise.fill(&mut buf);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"n":{i}}}"#
        );
        for blob in [config.as_bytes(), &buf[..]] {
            let d = digest(blob);
            let path = format!("/v2/bench/img{i}/blobs/uploads/?digest={d}");
            let r = request(addr, "POST", &path, &[], blob).expect("push");
            assert_eq!(r.status, 201);
        }
        let m = oci_manifest(config.as_bytes(), &[&buf]);
        let r = put_manifest(addr, &format!("bench/img{i}"), "v1", &m).expect("manifest");
        assert_eq!(r.status, 201);
    }
}

/// A figure set: seconds, and CPU seconds of each process.
struct Figures {
    seconds: f64,
    cpu: Vec<(&'static str, f64)>,
}

fn berth_run(core: &Core, dist: &Distribution) -> Figures {
    let (core_pid, dist_pid) = (core.pid().expect("core"), dist.child.id());
    let (c0, d0) = (proc::cpu_seconds(core_pid), proc::cpu_seconds(dist_pid));
    proc::reset_peak(core_pid);
    let rss0 = proc::rss_mib(core_pid);
    let t = Instant::now();
    let r = request(
        &core.main,
        "POST",
        "/api/v1/replication/bench/run",
        &[("Content-Type", "application/json")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let report = loop {
        let runs = request(
            &core.main,
            "GET",
            "/api/v1/replication/bench/runs",
            &[],
            b"",
        )
        .unwrap()
        .json();
        if let Some(run) = runs.as_array().and_then(|a| a.first()).cloned() {
            break run;
        }
        assert!(t.elapsed() < Duration::from_secs(600), "no run");
        std::thread::sleep(Duration::from_millis(20));
    };
    let seconds = t.elapsed().as_secs_f64();
    assert_eq!(report["outcome"], "succeeded", "{report}");
    // Streamed: the core's memory does not grow with the bytes copied.
    println!(
        "berth push rule: core peak RSS growth {:.1} MiB",
        proc::peak_rss_mib(core_pid) - rss0
    );
    Figures {
        seconds,
        cpu: vec![
            ("core", proc::cpu_seconds(core_pid) - c0),
            ("destination", proc::cpu_seconds(dist_pid) - d0),
        ],
    }
}

fn skopeo_run(core: &Core, dist: &Distribution, images: usize) -> Figures {
    let work = tempfile::tempdir().expect("tempdir");
    let source = core.connector("hosted");
    let mut yaml = format!("{source}:\n  tls-verify: false\n  images:\n");
    for i in 0..images {
        yaml.push_str(&format!("    bench/img{i}: [v1]\n"));
    }
    let file = work.path().join("sync.yaml");
    std::fs::write(&file, yaml).expect("sync.yaml");
    let (core_pid, dist_pid) = (core.pid().expect("core"), dist.child.id());
    let (c0, d0) = (proc::cpu_seconds(core_pid), proc::cpu_seconds(dist_pid));
    let me = std::process::id();
    let s0 = proc::tree_cpu_seconds(me) - proc::cpu_seconds(me);
    let t = Instant::now();
    let out = Command::new("skopeo")
        .args([
            "sync",
            "--all",
            "--src",
            "yaml",
            "--dest",
            "docker",
            "--dest-tls-verify=false",
        ])
        .arg(&file)
        .arg(format!("{}/synced", dist.addr))
        .output()
        .expect("skopeo");
    let seconds = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let skopeo = proc::tree_cpu_seconds(me) - proc::cpu_seconds(me) - s0;
    Figures {
        seconds,
        cpu: vec![
            ("skopeo", skopeo),
            ("core (source)", proc::cpu_seconds(core_pid) - c0),
            ("destination", proc::cpu_seconds(dist_pid) - d0),
        ],
    }
}

fn main() {
    let images = env("BERTH_REPL_IMAGES", 20).max(1);
    let total = env("BERTH_REPL_MIB", 1024) << 20;
    let layer = total / images;
    let (to_berth, to_skopeo) = (Distribution::start(), Distribution::start());
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         replication:\n  - {{ name: bench, direction: push, repository: hosted, remote: {{ url: \"http://{}\" }} }}\n",
        dir.path().join("data").display(),
        to_berth.addr
    );
    let core = Core::start_in(dir, &config);
    eprintln!("seeding {images} images of {} MiB...", layer >> 20);
    seed(core.connector("hosted"), images, layer);
    let mib = (images * layer) as f64 / MIB;
    let b = berth_run(&core, &to_berth);
    let s = skopeo_run(&core, &to_skopeo, images);
    let sum = |f: &Figures| f.cpu.iter().map(|(_, c)| c).sum::<f64>();
    println!("\nreplicating {images} images, {mib:.0} MiB in all, to Distribution 2.8 on this box");
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("seconds", vec![b.seconds, s.seconds]),
        ("MiB/s", vec![mib / b.seconds, mib / s.seconds]),
        ("CPU s, all processes", vec![sum(&b), sum(&s)]),
        (
            "CPU ms per MiB, all processes",
            vec![sum(&b) * 1e3 / mib, sum(&s) * 1e3 / mib],
        ),
    ];
    for (name, cpu) in &b.cpu {
        println!("berth push rule  {name:<16} {cpu:.2} CPU s");
    }
    for (name, cpu) in &s.cpu {
        println!("skopeo sync      {name:<16} {cpu:.2} CPU s");
    }
    rows.push(("destination CPU s", vec![b.cpu[1].1, s.cpu[2].1]));
    print_table(&["berth rule", "skopeo sync"], &rows);
}
