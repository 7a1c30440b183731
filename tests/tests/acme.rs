//! ACME at the edge against Let's Encrypt's test CA (Debian `pebble`, validating for real over
//! TLS-ALPN-01 on the edge's port): first issuance on an empty state dir verified by a client
//! trusting only pebble's root, with both SANs; a restart that reuses the stored account and
//! certificate; renewal swapped in under a live request loop with no failed request; the CA
//! down at renewal time (the old certificate keeps serving, failures are counted and logged)
//! and issuance once it is back; a CA requiring external account binding refuses an unbound
//! account and registers a bound one.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::core::{default_config, Core};
use berth_tests::edge::{free_port, Edge};
use berth_tests::http::request;
use berth_tests::pebble::Pebble;
use berth_tests::prometheus::{sample, scrape};

struct Setup {
    _core: Core,
    pebble: Pebble,
    state: tempfile::TempDir,
    ports: Vec<u16>,
    config: String,
}

impl Setup {
    fn new(validity: Duration, renew_before: &str) -> Setup {
        Setup::with_challenge(validity, renew_before, "tls-alpn-01")
    }

    fn with_challenge(validity: Duration, renew_before: &str, challenge: &str) -> Setup {
        Setup::build(validity, renew_before, challenge, None)
    }

    /// `eab`: pebble registers only accounts bound to this key id and base64url MAC key.
    fn build(
        validity: Duration,
        renew_before: &str,
        challenge: &str,
        eab: Option<(&str, &str)>,
    ) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let config = default_config(&dir.path().join("data"));
        let core = Core::start_in(dir, &config);
        let ports = vec![free_port(), free_port()];
        let http_port = free_port();
        let pebble = match eab {
            Some((kid, key)) => {
                Pebble::start_requiring_eab(ports[0], http_port, validity, kid, key)
            }
            None => Pebble::start(ports[0], http_port, validity),
        };
        let state = tempfile::tempdir().unwrap();
        let config = format!(
            "state_dir: {}\nhealth_check_interval: 200ms\nmetrics: {{ listen: 127.0.0.1:{} }}\n\
             listeners:\n  - name: acme\n    listen: 127.0.0.1:{}\n    tls:\n      acme:\n        \
             directory: \"{}\"\n        domains: [registry.test, docker.test]\n        \
             contact: [\"mailto:ops@registry.test\"]\n        challenge: {challenge}\n        \
             http_listen: 127.0.0.1:{http_port}\n        \
             ca_file: {}\n        {renew_before}\n    upstreams: [{}]\n",
            state.path().join("state").display(),
            ports[1],
            ports[0],
            pebble.directory(),
            pebble.https_ca().display(),
            core.connector("hosted")
        );
        Setup {
            _core: core,
            pebble,
            state,
            ports,
            config,
        }
    }

    fn edge(&self) -> Edge {
        let config = self.config.clone();
        Edge::try_start(
            tempfile::tempdir().unwrap(),
            self.ports.clone(),
            &move |_| config.clone(),
        )
        .unwrap()
    }

    /// The served certificate, from the edge's inventory.
    fn served(&self) -> serde_json::Value {
        let m = format!("127.0.0.1:{}", self.ports[1]);
        let r = request(&m, "GET", "/certs", &[], b"").unwrap();
        r.json()["certificates"][0].clone()
    }

    /// Waits until the inventory shows an ACME certificate other than `not_after`.
    fn wait_issued(&self, edge: &Edge, other_than: &str, limit: Duration) -> serde_json::Value {
        let deadline = Instant::now() + limit;
        loop {
            let c = self.served();
            if c["source"] == "acme" && c["not_after"] != other_than {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no ACME certificate: {c}\nedge: {}",
                edge.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn metric(&self, prefix: &str) -> f64 {
        sample(&scrape(&format!("127.0.0.1:{}", self.ports[1])), prefix)
    }
}

/// An HTTPS request verified against `root` only, for `name`.
fn verified(root: &Path, name: &str, port: u16) -> Result<(), String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
        ])
        .arg(root)
        .arg("--resolve")
        .arg(format!("{name}:{port}:127.0.0.1"))
        .arg(format!("https://{name}:{port}/v2/"))
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    if code == "200" {
        Ok(())
    } else {
        Err(format!("{code}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn first_issuance_then_a_restart_reuses_account_and_certificate() {
    let s = Setup::new(Duration::from_secs(3600), "");
    let edge = s.edge();
    let started = Instant::now();
    let issued = s.wait_issued(&edge, "", Duration::from_secs(60));
    eprintln!(
        "first ACME certificate served {:?} after the edge was ready",
        started.elapsed()
    );
    assert!(
        edge.log().contains("temporary self-signed"),
        "{}",
        edge.log()
    );
    let sans = issued["sans"].to_string();
    assert!(
        sans.contains("DNS:registry.test") && sans.contains("DNS:docker.test"),
        "{issued}"
    );
    let root = s.pebble.root(&s.state.path().join("root.pem"));
    for name in ["registry.test", "docker.test"] {
        verified(&root, name, s.ports[0]).unwrap();
    }
    let acme_dir: PathBuf = s.state.path().join("state/acme");
    assert_eq!(mode(&acme_dir.join("acme/key.pem")), 0o600);
    let account = std::fs::read_dir(acme_dir.join("accounts"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(mode(&account.path()), 0o600);
    assert_eq!(edge.log().matches("ACME account registered").count(), 1);
    drop(edge);

    // A restart serves the stored certificate at once and orders nothing.
    let edge = s.edge();
    let again = s.served();
    assert_eq!(again["source"], "acme");
    assert_eq!(again["not_after"], issued["not_after"]);
    verified(&root, "registry.test", s.ports[0]).unwrap();
    // Once the task has looked and found nothing due, nothing else may have happened.
    let log = edge.wait_log("ACME certificate current; nothing to order");
    assert!(!log.contains("ACME account registered"), "{log}");
    assert!(!log.contains("ACME certificate issued"), "{log}");
    assert!(!log.contains("temporary self-signed"), "{log}");

    // `berth-proxy renew` makes the running edge order at once, though the certificate is young.
    let renew = |listener: &str| {
        Command::new(berth_tests::bin("berth-proxy"))
            .args(["renew", "--config"])
            .arg(edge.dir.path().join("proxy.yaml"))
            .arg(listener)
            .output()
            .unwrap()
    };
    let unknown = renew("nope");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("acme"));
    let asked = renew("acme");
    assert!(asked.status.success(), "{asked:?}");
    let renewed = s.wait_issued(
        &edge,
        issued["not_after"].as_str().unwrap(),
        Duration::from_secs(30),
    );
    verified(&root, "docker.test", s.ports[0]).unwrap();
    assert!(!acme_dir.join("acme/renew-requested").exists());
    assert_eq!(renewed["source"], "acme");
}

/// Requests in a loop, each on a new connection verified against `root`, until stopped.
fn live_loop(
    root: PathBuf,
    port: u16,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match verified(&root, "registry.test", port) {
                Ok(()) => {
                    ok.fetch_add(1, Ordering::SeqCst);
                }
                Err(e) => failed.lock().unwrap().push(e),
            }
        }
    })
}

#[test]
fn renewal_under_traffic_and_a_ca_outage_at_renewal_time() {
    // 40 s certificates renewed 25 s before expiry: a renewal every ~15 s.
    let mut s = Setup::new(Duration::from_secs(40), "renew_before: 25s");
    let edge = s.edge();
    let first = s.wait_issued(&edge, "", Duration::from_secs(60));
    let root = s.pebble.root(&s.state.path().join("root1.pem"));

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
    let worker = live_loop(
        root.clone(),
        s.ports[0],
        stop.clone(),
        ok.clone(),
        failed.clone(),
    );
    let second = s.wait_issued(
        &edge,
        first["not_after"].as_str().unwrap(),
        Duration::from_secs(40),
    );
    // Traffic goes on under the new certificate before the load stops.
    let at_renewal = ok.load(Ordering::SeqCst);
    berth_tests::edge::wait_for(|| (ok.load(Ordering::SeqCst) >= at_renewal + 5).then_some(()))
        .expect("no request succeeded after the renewal");
    stop.store(true, Ordering::SeqCst);
    worker.join().unwrap();
    assert!(
        failed.lock().unwrap().is_empty(),
        "{:?}",
        failed.lock().unwrap()
    );
    assert!(
        ok.load(Ordering::SeqCst) >= 10,
        "{}",
        ok.load(Ordering::SeqCst)
    );
    eprintln!(
        "renewal under traffic: {} verified requests, 0 failed",
        ok.load(Ordering::SeqCst)
    );

    // The CA goes down before the next renewal: failures are counted, the certificate serves.
    s.pebble.stop();
    let failures = "berth_edge_acme_failures_total{listener=\"acme\"}";
    let deadline = Instant::now() + Duration::from_secs(40);
    while s.metric(failures) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no failure counted:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    verified(&root, "registry.test", s.ports[0]).unwrap();
    assert_eq!(s.served()["not_after"], second["not_after"]);
    let log = edge.log();
    assert!(
        log.lines().any(|l| l.contains("ERROR")
            && l.contains("ACME issuance failed")
            && l.contains("listener=acme")),
        "{log}"
    );

    // Back (with a new root, as pebble makes one per start): issuance succeeds.
    s.pebble.restart();
    let root2 = s.pebble.root(&s.state.path().join("root2.pem"));
    let third = s.wait_issued(
        &edge,
        second["not_after"].as_str().unwrap(),
        Duration::from_secs(40),
    );
    assert_eq!(third["source"], "acme");
    verified(&root2, "docker.test", s.ports[0]).unwrap();
}

#[test]
fn http_01_is_answered_on_the_port_80_listener() {
    let s = Setup::with_challenge(Duration::from_secs(3600), "", "http-01");
    let edge = s.edge();
    let issued = s.wait_issued(&edge, "", Duration::from_secs(60));
    assert!(
        issued["sans"].to_string().contains("DNS:docker.test"),
        "{issued}"
    );
    let root = s.pebble.root(&s.state.path().join("root.pem"));
    verified(&root, "registry.test", s.ports[0]).unwrap();
}

/// Clusters of arrivals more than a second apart: one per issuance attempt.
fn attempts(arrivals: &[Instant]) -> Vec<Instant> {
    let mut starts: Vec<Instant> = Vec::new();
    for (i, a) in arrivals.iter().enumerate() {
        if i == 0 || a.duration_since(arrivals[i - 1]) > Duration::from_secs(1) {
            starts.push(*a);
        }
    }
    starts
}

/// A CA answering 503 with `Retry-After: 5` is asked again only after 5 s, although the
/// back-off alone would retry after about 2 s; meanwhile the temporary certificate serves and
/// every refusal is counted and logged.
#[test]
fn a_busy_ca_is_asked_again_only_after_its_retry_after() {
    let pki = tempfile::tempdir().unwrap();
    berth_tests::edge::make_ca(pki.path());
    let (cert, key) =
        berth_tests::edge::issue(pki.path(), pki.path(), "ca-server", &[], &["127.0.0.1"]);
    let busy = berth_tests::busy_ca::BusyCa::start(&cert, &key, 5);
    let dir = tempfile::tempdir().unwrap();
    let config = default_config(&dir.path().join("data"));
    let core = Core::start_in(dir, &config);
    let ports = vec![free_port(), free_port()];
    let config = format!(
        "state_dir: ./state\nmetrics: {{ listen: 127.0.0.1:{} }}\n\
         listeners:\n  - name: acme\n    listen: 127.0.0.1:{}\n    tls:\n      acme:\n        \
         directory: \"https://127.0.0.1:{}/dir\"\n        domains: [registry.test]\n        \
         ca_file: {}\n    upstreams: [{}]\n",
        ports[1],
        ports[0],
        busy.port,
        pki.path().join("ca.crt").display(),
        core.connector("hosted")
    );
    let edge = Edge::try_start(tempfile::tempdir().unwrap(), ports.clone(), &move |_| {
        config.clone()
    })
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempts(&busy.arrivals()).len() < 3 {
        assert!(Instant::now() < deadline, "edge: {}", edge.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let starts = attempts(&busy.arrivals());
    for w in starts.windows(2) {
        let gap = w[1].duration_since(w[0]);
        assert!(gap >= Duration::from_millis(4900), "retried after {gap:?}");
    }
    let m = format!("127.0.0.1:{}", ports[1]);
    let certs = request(&m, "GET", "/certs", &[], b"").unwrap().json();
    assert_eq!(certs["certificates"][0]["source"], "temporary-self-signed");
    let failures = sample(
        &scrape(&m),
        "berth_edge_acme_failures_total{listener=\"acme\"}",
    );
    assert!((2.0..=3.0).contains(&failures), "{failures}");
    let log = edge.log();
    assert!(log.contains("ACME issuance failed"), "{log}");
}

#[test]
fn a_ca_requiring_external_account_binding_registers_the_bound_account() {
    // 32 random bytes, base64url, as a CA hands out an EAB MAC key.
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wE";
    let mut s = Setup::build(
        Duration::from_secs(3600),
        "",
        "tls-alpn-01",
        Some(("kid-berth", key)),
    );

    // Without the binding the CA refuses the account: named in an ERROR, counted, and the
    // temporary certificate keeps the listener up.
    let edge = s.edge();
    let failures = "berth_edge_acme_failures_total{listener=\"acme\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.metric(failures) < 1.0 {
        assert!(Instant::now() < deadline, "no failure: {}", edge.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = edge.log();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("externalAccountRequired")),
        "{log}"
    );
    assert_eq!(s.served()["source"], "temporary-self-signed");
    drop(edge);

    // With the key id and the MAC key from a file, the account is registered and bound.
    let key_file = s.state.path().join("eab.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    s.config = s.config.replace(
        "        challenge:",
        &format!(
            "        eab: {{ kid: kid-berth, hmac_key_file: {} }}\n        challenge:",
            key_file.display()
        ),
    );
    let edge = s.edge();
    let issued = s.wait_issued(&edge, "", Duration::from_secs(60));
    assert!(
        issued["sans"].to_string().contains("DNS:registry.test"),
        "{issued}"
    );
    assert_eq!(edge.log().matches("ACME account registered").count(), 1);
    let root = s.pebble.root(&s.state.path().join("root.pem"));
    verified(&root, "registry.test", s.ports[0]).unwrap();
}
