//! The mixed scenario: 32 keep-alive HTTPS clients, each going round a fixed cycle of six
//! manifest GETs, three 4 MiB blob pulls and one small push (a 16 KiB layer in two requests, then
//! its manifest), closed loop, for a fixed time. The same clients and cycle run against Berth's
//! edge + core and against Distribution behind nginx (its documented recipe), one after the
//! other in the same process, so the two columns differ only in the server.
//!
//! What it shows is fairness as much as speed: a manifest GET queued behind 4 MiB bodies on the
//! same cores is where tail latency comes from, so p99 is printed per kind of request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::bench::{print_table, Distribution, Nginx};
use berth_tests::core::{default_config, Core};
use berth_tests::edge::{issue, make_ca, Edge};
use berth_tests::http;
use berth_tests::image::Noise;
use berth_tests::proc;
use berth_tests::tls::{Conn, Reply};

const CLIENTS: usize = 32;
const IMAGES: usize = 8;
const LAYER: usize = 4 << 20;
const SMALL: usize = 16 << 10;
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

#[derive(Clone, Copy)]
enum Kind {
    Manifest = 0,
    Pull = 1,
    Push = 2,
}

/// Each client's round: 6 manifest GETs, 3 layer pulls, 1 push.
const CYCLE: [Kind; 10] = {
    use Kind::*;
    [
        Manifest, Pull, Manifest, Manifest, Pull, Manifest, Push, Manifest, Pull, Manifest,
    ]
};

/// One server set-up under test.
struct Target {
    name: &'static str,
    /// Where to connect, and the `Host` the clients name (SNI is its host part).
    addr: String,
    host: String,
    pids: Vec<u32>,
}

/// What the clients saw: latencies (ms) per kind of op, and the failures.
#[derive(Default)]
struct Tally {
    latencies: [Vec<f64>; 3],
    errors: Vec<String>,
}

/// The figures of one target.
struct Figures {
    seconds: f64,
    tally: Tally,
    cpu: f64,
}

/// Runs the scenario for `seconds` against both targets and prints the table.
pub fn run(seconds: u64) {
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
    let tls = berth_tests::tls::config(&ca_dir.join("ca.crt"));
    let mut columns = Vec::new();
    let mut results = Vec::new();
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "{}trusted_proxies: [127.0.0.1]\n",
            default_config(&dir.path().join("data"))
        );
        let core = Core::start_in(dir, &config);
        let upstream = core.connector("hosted").to_owned();
        let edge = Edge::start(1, |p| {
            format!(
                "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
                p[0], cert.display(), key.display()
            )
        });
        let target = Target {
            name: "edge+core",
            addr: format!("127.0.0.1:{}", edge.ports[0]),
            host: format!("registry.test:{}", edge.ports[0]),
            pids: vec![edge.pid(), core.pid().expect("pid")],
        };
        results.push(measure(&tls, &target, seconds));
        columns.push(target.name);
    }
    {
        let dist = Distribution::start();
        let nginx = Nginx::start(&dist.addr, &cert, &key);
        let target = Target {
            name: "nginx+dist",
            addr: format!("127.0.0.1:{}", nginx.port),
            host: format!("registry.test:{}", nginx.port),
            pids: [nginx.pids(), vec![dist.child.id()]].concat(),
        };
        results.push(measure(&tls, &target, seconds));
        columns.push(target.name);
    }
    report(&columns, &results);
}

/// Seeds the images, then runs the clients against one target.
fn measure(tls: &Arc<rustls::ClientConfig>, target: &Target, seconds: u64) -> Figures {
    eprintln!(
        "{}: seeding {IMAGES} images of {} MiB...",
        target.name,
        LAYER >> 20
    );
    let mut link = Link {
        tls: tls.clone(),
        addr: target.addr.clone(),
        host: target.host.clone(),
        conn: None,
    };
    let layers: Vec<String> = (0..IMAGES)
        .map(|i| {
            let mut layer = vec![0u8; LAYER];
            Noise::new(i as u64 + 1).fill(&mut layer);
            push_image(&mut link, &format!("mixed/i{i}"), "v1", &layer).expect("seed");
            http::digest(&layer)
        })
        .collect();
    drop(link);
    eprintln!("{}: {CLIENTS} clients for {seconds} s...", target.name);
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0: f64 = target.pids.iter().map(|p| proc::cpu_seconds(*p)).sum();
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (tls, stop, layers) = (tls.clone(), stop.clone(), layers.clone());
            let (addr, host) = (target.addr.clone(), target.host.clone());
            std::thread::spawn(move || client(c, &tls, &addr, &host, &layers, &stop))
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::SeqCst);
    let mut tally = Tally::default();
    for t in clients {
        let one = t.join().expect("client thread");
        for (all, mine) in tally.latencies.iter_mut().zip(one.latencies) {
            all.extend(mine);
        }
        tally.errors.extend(one.errors);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu: f64 = target
        .pids
        .iter()
        .map(|p| proc::cpu_seconds(*p))
        .sum::<f64>()
        - cpu0;
    Figures {
        seconds,
        tally,
        cpu,
    }
}

/// One client: goes round [`CYCLE`] until told to stop, starting at its own place in it so the
/// clients do not move in step.
fn client(
    c: usize,
    tls: &Arc<rustls::ClientConfig>,
    addr: &str,
    host: &str,
    layers: &[String],
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut link = Link {
        tls: tls.clone(),
        addr: addr.to_owned(),
        host: host.to_owned(),
        conn: None,
    };
    let mut small = vec![0u8; SMALL];
    let mut n = c;
    while !stop.load(Ordering::Relaxed) {
        let kind = CYCLE[n % CYCLE.len()];
        let image = n % IMAGES;
        let started = Instant::now();
        let outcome = match kind {
            Kind::Manifest => get_manifest(&mut link, image),
            Kind::Pull => pull_layer(&mut link, image, &layers[image]),
            Kind::Push => {
                Noise::new(((c as u64) << 32) | n as u64).fill(&mut small);
                push_image(
                    &mut link,
                    &format!("mixed/c{c}"),
                    &format!("t{}", n % 5),
                    &small,
                )
            }
        };
        match outcome {
            Ok(()) => tally.latencies[kind as usize].push(started.elapsed().as_secs_f64() * 1000.0),
            Err(e) => tally.errors.push(e),
        }
        n += 1;
    }
    tally
}

/// A client's keep-alive connection, opened again when the server closes it (nginx does after
/// `keepalive_requests`, 1000 by default) or a request fails.
struct Link {
    tls: Arc<rustls::ClientConfig>,
    addr: String,
    host: String,
    conn: Option<Conn>,
}

impl Link {
    /// Sends one request and checks its status.
    fn expect(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        want: u16,
    ) -> Result<Reply, String> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let fresh = Conn::open(&self.tls, &self.addr, &self.host)
                    .map_err(|e| format!("connect: {e}"))?;
                self.conn.insert(fresh)
            }
        };
        let reply = conn.request(method, path, headers, body);
        let closing = reply.as_ref().map_or(true, |r| {
            r.1.iter()
                .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"))
        });
        if closing {
            self.conn = None;
        }
        match reply {
            Ok(reply) if reply.0 == want => Ok(reply),
            Ok((status, _, body)) => Err(format!(
                "{method} {path}: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )),
            Err(e) => Err(format!("{method} {path}: {e}")),
        }
    }
}

fn get_manifest(link: &mut Link, image: usize) -> Result<(), String> {
    let path = format!("/v2/mixed/i{image}/manifests/v1");
    link.expect("GET", &path, &[("Accept", OCI)], b"", 200)
        .map(drop)
}

fn pull_layer(link: &mut Link, image: usize, digest: &str) -> Result<(), String> {
    let path = format!("/v2/mixed/i{image}/blobs/{digest}");
    let reply = link.expect("GET", &path, &[], b"", 200)?;
    if reply.2.len() != LAYER {
        return Err(format!("GET {path}: {} bytes", reply.2.len()));
    }
    Ok(())
}

/// Pushes a blob the way both servers take it: POST opens the session, PUT with the digest
/// carries the bytes and closes it (Distribution 2.8 has no one-request monolithic POST).
fn push_blob(link: &mut Link, image: &str, bytes: &[u8]) -> Result<(), String> {
    let start = format!("/v2/{image}/blobs/uploads/");
    let reply = link.expect("POST", &start, &[], b"", 202)?;
    let location = reply
        .1
        .iter()
        .find(|(k, _)| k == "location")
        .and_then(|(_, v)| v.find("/v2/").map(|at| v[at..].to_owned()))
        .ok_or_else(|| format!("POST {start}: no Location"))?;
    let sep = if location.contains('?') { '&' } else { '?' };
    let put = format!("{location}{sep}digest={}", http::digest(bytes));
    let headers = [("Content-Type", "application/octet-stream")];
    link.expect("PUT", &put, &headers, bytes, 201).map(drop)
}

/// Pushes a one-layer image: its config, its layer, then its manifest under `tag`.
fn push_image(link: &mut Link, image: &str, tag: &str, layer: &[u8]) -> Result<(), String> {
    let config = format!("{{\"image\":\"{image}\",\"tag\":\"{tag}\"}}");
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": http::digest(config.as_bytes()), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": http::digest(layer), "size": layer.len()}]})
    .to_string();
    push_blob(link, image, config.as_bytes())?;
    push_blob(link, image, layer)?;
    let path = format!("/v2/{image}/manifests/{tag}");
    let headers = [("Content-Type", OCI)];
    link.expect("PUT", &path, &headers, manifest.as_bytes(), 201)
        .map(drop)
}

/// The `p` quantile of sorted values, 0 when there are none.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).copied().unwrap_or(0.0)
}

fn report(columns: &[&str], results: &[Figures]) {
    let per = |kind: Kind, f: &dyn Fn(&[f64], f64) -> f64| -> Vec<f64> {
        results
            .iter()
            .map(|r| {
                let mut l = r.tally.latencies[kind as usize].clone();
                l.sort_by(|a, b| a.total_cmp(b));
                f(&l, r.seconds)
            })
            .collect()
    };
    let rate = |l: &[f64], s: f64| l.len() as f64 / s;
    let p50 = |l: &[f64], _: f64| quantile(l, 0.50);
    let p99 = |l: &[f64], _: f64| quantile(l, 0.99);
    let ops = |r: &Figures| r.tally.latencies.iter().map(Vec::len).sum::<usize>() as f64;
    println!(
        "\nmixed load: {CLIENTS} keep-alive HTTPS clients, {:.0} s each, cycle of 6 manifest GETs, \
         3 pulls of {} MiB, 1 push of {} KiB",
        results.first().map_or(0.0, |r| r.seconds),
        LAYER >> 20,
        SMALL >> 10
    );
    print_table(
        columns,
        &[
            ("manifest GETs/s", per(Kind::Manifest, &rate)),
            ("manifest GET p50 (ms)", per(Kind::Manifest, &p50)),
            ("manifest GET p99 (ms)", per(Kind::Manifest, &p99)),
            ("layer pulls/s", per(Kind::Pull, &rate)),
            ("layer pull p50 (ms)", per(Kind::Pull, &p50)),
            ("layer pull p99 (ms)", per(Kind::Pull, &p99)),
            ("pushes/s", per(Kind::Push, &rate)),
            ("push p50 (ms)", per(Kind::Push, &p50)),
            ("push p99 (ms)", per(Kind::Push, &p99)),
            (
                "errors",
                results
                    .iter()
                    .map(|r| r.tally.errors.len() as f64)
                    .collect(),
            ),
            (
                "server CPU (cores busy)",
                results.iter().map(|r| r.cpu / r.seconds).collect(),
            ),
            (
                "server CPU per op (ms)",
                results.iter().map(|r| r.cpu * 1000.0 / ops(r)).collect(),
            ),
        ],
    );
    for (name, r) in columns.iter().zip(results) {
        for e in r.tally.errors.iter().take(5) {
            println!("  {name}: {e}");
        }
    }
}
