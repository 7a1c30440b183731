//! The flood scenario: 50 authenticated clients push and pull through the edge over HTTPS
//! while a bad client floods failed logins, so the login back-off is seen not to slow anyone
//! else down. Prints requests/s, p50/p99 latency and the error count, which must be zero.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_tests::core::Core;
use berth_tests::edge::{issue, make_ca, Edge};
use berth_tests::http;
use berth_tests::tls::Conn;

const CLIENTS: usize = 50;
const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

fn hash(password: &str) -> String {
    berth_tests::core::hash_password(password)
}

/// Runs the scenario for `seconds`.
pub fn run(seconds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\ntrusted_proxies: [127.0.0.1]\n\
         auth:\n  token_ttl: 30m\n  users:\n    - {{ name: alice, password_hash: \"{}\", roles: [dev] }}\n\
         \x20 roles:\n    - {{ name: dev, privileges: [{{ repositories: \"*\", actions: [read, write] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display(),
        hash("alice-pw")
    );
    let core = Core::start_in(dir, &config);
    let work = tempfile::tempdir().expect("tempdir");
    let ca = work.path().join("ca");
    make_ca(&ca);
    let (cert, key) = issue(
        &ca,
        &work.path().join("leaf"),
        "server",
        &["registry.test"],
        &["127.0.0.1"],
    );
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!("state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n", p[0], cert.display(), key.display())
    });
    let addr = format!("127.0.0.1:{}", edge.ports[0]);
    let host = format!("registry.test:{}", edge.ports[0]);
    let tls = berth_tests::tls::config(&ca.join("ca.crt"));
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("alice:alice-pw")
    );

    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<f64>::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let requests = Arc::new(AtomicUsize::new(0));
    eprintln!("{CLIENTS} clients for {seconds} s through https://{host} ...");
    let started = Instant::now();
    let mut threads = Vec::new();
    for c in 0..CLIENTS {
        let (tls, addr, host, basic) = (tls.clone(), addr.clone(), host.clone(), basic.clone());
        let (stop, latencies, errors, requests) = (
            stop.clone(),
            latencies.clone(),
            errors.clone(),
            requests.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let image = format!("load/c{c}");
            let mut conn = match Conn::open(&tls, &addr, &host) {
                Ok(c) => c,
                Err(e) => return errors.lock().expect("lock").push(format!("client {c}: connect: {e}")),
            };
            let timed = |conn: &mut Conn, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8], want: u16| {
                let t = Instant::now();
                let r = conn.request(method, path, headers, body);
                latencies.lock().expect("lock").push(t.elapsed().as_secs_f64() * 1000.0);
                requests.fetch_add(1, Ordering::Relaxed);
                match r {
                    Ok((s, _, b)) if s == want => Some(b),
                    Ok((s, _, b)) => {
                        errors.lock().expect("lock").push(format!("{method} {path}: {s} {}", String::from_utf8_lossy(&b)));
                        None
                    }
                    Err(e) => {
                        errors.lock().expect("lock").push(format!("{method} {path}: {e}"));
                        None
                    }
                }
            };
            let Some(body) = timed(&mut conn, "GET", &format!("/v2/token?service=berth&scope=repository:{image}:pull,push"), &[("Authorization", &basic)], b"", 200) else { return };
            let token = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["token"].as_str().map(str::to_owned)).unwrap_or_default();
            let auth = format!("Bearer {token}");
            let config_blob = format!("{{\"client\":{c}}}");
            let config_digest = http::digest(config_blob.as_bytes());
            timed(&mut conn, "POST", &format!("/v2/{image}/blobs/uploads/?digest={config_digest}"), &[("Authorization", &auth)], config_blob.as_bytes(), 201);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let layer = format!("client {c} iteration {i} {}", "x".repeat(16 * 1024));
                let ld = http::digest(layer.as_bytes());
                timed(&mut conn, "POST", &format!("/v2/{image}/blobs/uploads/?digest={ld}"), &[("Authorization", &auth)], layer.as_bytes(), 201);
                let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": OCI,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_blob.len()},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]}).to_string();
                let tag = format!("t{}", i % 5);
                timed(&mut conn, "PUT", &format!("/v2/{image}/manifests/{tag}"), &[("Authorization", &auth), ("Content-Type", OCI)], manifest.as_bytes(), 201);
                timed(&mut conn, "GET", &format!("/v2/{image}/manifests/{tag}"), &[("Authorization", &auth), ("Accept", OCI)], b"", 200);
                timed(&mut conn, "GET", &format!("/v2/{image}/blobs/{ld}"), &[("Authorization", &auth)], b"", 200);
                i += 1;
            }
        }));
    }
    // The bad client: wrong passwords as fast as it can.
    let flood = {
        let (tls, addr, host, stop) = (tls.clone(), addr.clone(), host.clone(), stop.clone());
        std::thread::spawn(move || {
            let bad = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("alice:guess")
            );
            let mut counts = std::collections::BTreeMap::new();
            let Ok(mut conn) = Conn::open(&tls, &addr, &host) else {
                return counts;
            };
            while !stop.load(Ordering::Relaxed) {
                match conn.request("GET", "/v2/", &[("Authorization", &bad)], b"") {
                    Ok((s, _, _)) => *counts.entry(s).or_insert(0u64) += 1,
                    Err(_) => match Conn::open(&tls, &addr, &host) {
                        Ok(c) => conn = c,
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    },
                }
            }
            counts
        })
    };
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    let flood = flood.join().unwrap_or_default();
    let elapsed = started.elapsed().as_secs_f64();
    let mut l = latencies.lock().expect("lock").clone();
    l.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let errors = errors.lock().expect("lock");
    println!(
        "\nload: {CLIENTS} authenticated clients, {elapsed:.0} s, through the edge over HTTPS"
    );
    println!("requests            {}", requests.load(Ordering::Relaxed));
    println!(
        "requests/s          {:.0}",
        requests.load(Ordering::Relaxed) as f64 / elapsed
    );
    println!("latency p50 (ms)    {:.2}", pct(0.50));
    println!("latency p99 (ms)    {:.2}", pct(0.99));
    println!("errors              {}", errors.len());
    println!("failed-login flood  {flood:?} (status: count)");
    for e in errors.iter().take(10) {
        println!("  {e}");
    }
    assert!(errors.is_empty(), "errors under load");
}
