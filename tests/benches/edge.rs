//! HTTPS benchmark: the same workload through four setups, side by side in one run.
//!
//! - `edge+core`: berth-proxy terminating TLS in front of berth-core;
//! - `nginx+core`: nginx (Distribution's recipe) in front of the same berth-core;
//! - `nginx+dist`: nginx in front of CNCF Distribution, the documented reference setup;
//! - `core http`: berth-core's connector directly over plain HTTP, the floor.
//!
//! Figures: push and pull MB/s of a 1 GiB blob with curl, manifest GET requests/s and p99 with
//! wrk (2 threads, 16 connections, 10 s), server CPU per MiB and per request summed over every
//! server process of the setup, and the TLS front's peak RSS during the push. Needs release
//! binaries (`cargo build --release --workspace`), and `docker-registry`, `nginx-light`, `wrk`,
//! `curl` from Debian.
//!
//! Then the cost of the edge's metrics: manifest GET requests/s and edge CPU per request
//! through two edges in front of one core, one with `metrics: { listen }` (every request
//! counted, scraped as by Prometheus) and one without, in alternating rounds.
//! `cargo bench --bench edge -- metrics` runs only that part.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use berth_tests::bench::{print_table, wrk, Distribution, Nginx};
use berth_tests::core::{default_config, Core};
use berth_tests::edge::{issue, make_ca, Edge};
use berth_tests::http;
use berth_tests::image::Pattern;
use berth_tests::proc;

const MIB: f64 = 1024.0 * 1024.0;
const SIZE: u64 = 1 << 30;
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

struct Setup {
    name: &'static str,
    scheme: &'static str,
    host_port: String,
    /// Server processes whose CPU counts.
    pids: Vec<u32>,
    /// The TLS front, for RSS.
    front: Option<u32>,
}

#[derive(Default)]
struct Figures {
    push_mbs: f64,
    pull_mbs: f64,
    cpu_push: f64,
    cpu_pull: f64,
    rps: f64,
    p99: f64,
    cpu_get: f64,
    front_rss_growth: f64,
}

fn cpu(pids: &[u32]) -> f64 {
    pids.iter().map(|p| proc::cpu_seconds(*p)).sum()
}

fn curl(ca: &Path, s: &Setup) -> Command {
    let mut c = Command::new("curl");
    c.args(["-sS", "--fail", "--max-time", "600", "--cacert"])
        .arg(ca);
    if s.scheme == "https" {
        let port = s.host_port.rsplit(':').next().unwrap_or("");
        c.arg("--resolve")
            .arg(format!("registry.test:{port}:127.0.0.1"));
    }
    c
}

fn url(s: &Setup, path: &str) -> String {
    format!("{}://{}{path}", s.scheme, s.host_port)
}

fn location(headers: &str) -> String {
    headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("location:"))
        .map(|l| l[9..].trim().to_owned())
        .unwrap_or_default()
}

fn upload(ca: &Path, s: &Setup, image: &str, file: &Path, digest: &str) -> f64 {
    let out = curl(ca, s)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(url(s, &format!("/v2/{image}/blobs/uploads/")))
        .output()
        .expect("curl");
    let loc = location(&String::from_utf8_lossy(&out.stdout));
    assert!(!loc.is_empty(), "{}: no upload location", s.name);
    let sep = if loc.contains('?') { '&' } else { '?' };
    // Location may be absolute (https://registry.test:PORT/...) or relative.
    let target = if loc.starts_with("http") {
        loc.clone()
    } else {
        url(s, &loc)
    };
    let t = Instant::now();
    let out = curl(ca, s)
        .args([
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/octet-stream",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-T",
        ])
        .arg(file)
        .arg(format!("{target}{sep}digest={digest}"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "201",
        "{}: push failed: {}",
        s.name,
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn push_manifest(ca: &Path, s: &Setup, dir: &Path) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cfile = dir.join(format!("config-{}", s.name));
    std::fs::write(&cfile, config).expect("config");
    let cd = http::digest(config);
    upload(ca, s, "bench/small", &cfile, &cd);
    let m = serde_json::json!({"schemaVersion": 2, "mediaType": MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()}, "layers": []});
    let mfile = dir.join(format!("manifest-{}", s.name));
    std::fs::write(&mfile, m.to_string()).expect("manifest");
    let out = curl(ca, s)
        .args([
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {MANIFEST}"),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
        ])
        .arg(format!("@{}", mfile.display()))
        .arg(url(s, "/v2/bench/small/manifests/v1"))
        .output()
        .expect("curl");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "201",
        "{}: manifest push",
        s.name
    );
}

fn measure(ca: &Path, s: &Setup, blob: &Path, digest: &str, dir: &Path) -> Figures {
    let mut f = Figures::default();
    let mib = SIZE as f64 / MIB;
    let rss0 = s.front.map(proc::rss_mib).unwrap_or(0.0);
    if let Some(p) = s.front {
        proc::reset_peak(p);
    }
    let c0 = cpu(&s.pids);
    f.push_mbs = mib / upload(ca, s, "bench/blob", blob, digest);
    f.cpu_push = (cpu(&s.pids) - c0) * 1000.0 / mib;
    f.front_rss_growth = s.front.map(proc::peak_rss_mib).unwrap_or(0.0) - rss0;

    let c0 = cpu(&s.pids);
    let t = Instant::now();
    let out = curl(ca, s)
        .args(["-o", "/dev/null", "-w", "%{size_download}"])
        .arg(url(s, &format!("/v2/bench/blob/blobs/{digest}")))
        .output()
        .expect("curl");
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        SIZE.to_string(),
        "{}: short pull",
        s.name
    );
    f.pull_mbs = mib / secs;
    f.cpu_pull = (cpu(&s.pids) - c0) * 1000.0 / mib;

    push_manifest(ca, s, dir);
    let c0 = cpu(&s.pids);
    // wrk cannot be told where registry.test is; it does not verify certificates anyway.
    let w = wrk(
        &url(s, "/v2/bench/small/manifests/v1").replace("registry.test", "127.0.0.1"),
        MANIFEST,
    );
    f.rps = w.rps;
    f.p99 = w.p99_ms;
    f.cpu_get = (cpu(&s.pids) - c0) * 1000.0 / w.requests.max(1.0);
    f
}

/// One edge for the metrics comparison; `metrics` adds a metrics listener on a second port.
fn metrics_edge(cert: &Path, key: &Path, upstream: &str, metrics: bool) -> Edge {
    Edge::start(2, |p| {
        let m = if metrics {
            format!("metrics: {{ listen: 127.0.0.1:{} }}\n", p[1])
        } else {
            String::new()
        };
        format!(
            "state_dir: ./state\n{m}listeners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], cert.display(), key.display()
        )
    })
}

/// Manifest GET through an edge with metrics off and one with metrics on, three alternating
/// rounds each: median requests/s, p99 and edge CPU per request.
fn metrics_overhead(ca: &Path, cert: &Path, key: &Path, dir: &Path) {
    let core_dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "{}trusted_proxies: [127.0.0.1]\n",
        default_config(&core_dir.path().join("data"))
    );
    let core = Core::start_in(core_dir, &cfg);
    let upstream = core.connector("hosted").to_owned();
    let edges = [
        metrics_edge(cert, key, &upstream, false),
        metrics_edge(cert, key, &upstream, true),
    ];
    let setup = |e: &Edge| Setup {
        name: "edge",
        scheme: "https",
        host_port: format!("registry.test:{}", e.ports[0]),
        pids: vec![e.pid()],
        front: Some(e.pid()),
    };
    push_manifest(ca, &setup(&edges[0]), dir);
    let mut rps = [Vec::new(), Vec::new()];
    let mut p99 = [Vec::new(), Vec::new()];
    let mut cpu_req = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (i, e) in edges.iter().enumerate() {
            eprintln!("metrics {} round {round}...", ["off", "on"][i]);
            let c0 = proc::cpu_seconds(e.pid());
            let w = wrk(
                &format!(
                    "https://127.0.0.1:{}/v2/bench/small/manifests/v1",
                    e.ports[0]
                ),
                MANIFEST,
            );
            rps[i].push(w.rps);
            p99[i].push(w.p99_ms);
            cpu_req[i].push((proc::cpu_seconds(e.pid()) - c0) * 1000.0 / w.requests.max(1.0));
            if i == 1 {
                // Scraped, as Prometheus would.
                let m = format!("127.0.0.1:{}", e.ports[1]);
                let r = http::request(&m, "GET", "/metrics", &[], b"").expect("scrape");
                assert_eq!(r.status, 200);
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let row = |v: &mut [Vec<f64>; 2]| {
        let (off, on) = (median(&mut v[0]), median(&mut v[1]));
        vec![off, on, on / off]
    };
    print_table(
        &["metrics off", "metrics on", "on / off"],
        &[
            ("manifest GET via edge (req/s)", row(&mut rps)),
            ("manifest GET p99 (ms)", row(&mut p99)),
            ("edge CPU per manifest GET (ms)", row(&mut cpu_req)),
        ],
    );
}

fn main() {
    let only_metrics = std::env::args().any(|a| a == "metrics");
    let work = tempfile::tempdir().expect("tempdir");
    let ca_dir = work.path().join("ca");
    make_ca(&ca_dir);
    let (cert, key) = issue(
        &ca_dir,
        &work.path().join("leaf"),
        "server",
        &["registry.test"],
        &["127.0.0.1"],
    );
    let ca: PathBuf = ca_dir.join("ca.crt");
    if only_metrics {
        metrics_overhead(&ca, &cert, &key, work.path());
        return;
    }

    eprintln!("writing a 1 GiB blob...");
    let blob = work.path().join("blob.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&blob).expect("blob"));
        let mut buf = vec![0u8; Pattern::BLOCK as usize];
        let mut pos = 0;
        while pos < SIZE {
            Pattern::fill_at(pos, &mut buf);
            f.write_all(&buf).expect("write");
            pos += Pattern::BLOCK;
        }
    }
    let digest = Pattern::digest(SIZE);

    // Two cores so every setup starts from empty storage.
    let core_dir = tempfile::tempdir().expect("tempdir");
    let core_cfg = format!(
        "{}trusted_proxies: [127.0.0.1]\n",
        default_config(&core_dir.path().join("data"))
    );
    let core = Core::start_in(core_dir, &core_cfg);
    let core2_dir = tempfile::tempdir().expect("tempdir");
    let core2_cfg = format!(
        "{}trusted_proxies: [127.0.0.1]\n",
        default_config(&core2_dir.path().join("data"))
    );
    let core2 = Core::start_in(core2_dir, &core2_cfg);
    let core3 = Core::start();
    let core_pid = core.pid().expect("pid");
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], cert.display(), key.display()
        )
    });
    let nginx_core = Nginx::start(core2.connector("hosted"), &cert, &key);
    let dist = Distribution::start();
    let nginx_dist = Nginx::start(&dist.addr, &cert, &key);

    let setups = [
        Setup {
            name: "edge+core",
            scheme: "https",
            host_port: format!("registry.test:{}", edge.ports[0]),
            pids: vec![edge.pid(), core_pid],
            front: Some(edge.pid()),
        },
        Setup {
            name: "nginx+core",
            scheme: "https",
            host_port: format!("registry.test:{}", nginx_core.port),
            pids: [nginx_core.pids(), vec![core2.pid().expect("pid")]].concat(),
            front: nginx_core.pids().get(1).copied(),
        },
        Setup {
            name: "nginx+dist",
            scheme: "https",
            host_port: format!("registry.test:{}", nginx_dist.port),
            pids: [nginx_dist.pids(), vec![dist.child.id()]].concat(),
            front: nginx_dist.pids().get(1).copied(),
        },
        Setup {
            name: "core http",
            scheme: "http",
            host_port: core3.connector("hosted").to_owned(),
            pids: vec![core3.pid().expect("pid")],
            front: None,
        },
    ];
    let mut results = Vec::new();
    for s in &setups {
        eprintln!("measuring {}...", s.name);
        results.push(measure(&ca, s, &blob, &digest, work.path()));
    }
    let col = |f: fn(&Figures) -> f64| results.iter().map(f).collect::<Vec<_>>();
    let names: Vec<&str> = setups.iter().map(|s| s.name).collect();
    print_table(
        &names,
        &[
            ("push 1 GiB (MB/s)", col(|f| f.push_mbs)),
            ("pull 1 GiB (MB/s)", col(|f| f.pull_mbs)),
            ("manifest GET, 16 conns (req/s)", col(|f| f.rps)),
            ("manifest GET p99 (ms)", col(|f| f.p99)),
            ("server CPU per MiB pushed (ms)", col(|f| f.cpu_push)),
            ("server CPU per MiB pulled (ms)", col(|f| f.cpu_pull)),
            ("server CPU per manifest GET (ms)", col(|f| f.cpu_get)),
            (
                "TLS front RSS growth, push (MiB)",
                col(|f| f.front_rss_growth),
            ),
        ],
    );
    drop(setups);
    drop((edge, nginx_core, nginx_dist, dist, core, core2, core3));
    metrics_overhead(&ca, &cert, &key, work.path());
}
