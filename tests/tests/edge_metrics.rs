//! The edge's metrics listener against a real Prometheus server: requests per listener,
//! upstream and status, handshakes and failures by reason, upstream health and certificate
//! expiry; `/healthz`, `/readyz` (which turns 503 when the core behind a listener goes away),
//! the `/certs` inventory and `berth-proxy certs`; the edge's alert rules and dashboard.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::core::{default_config, Core};
use berth_tests::edge::{curl, issue, make_ca, Edge};
use berth_tests::http::request;
use berth_tests::prometheus::{promtool_check_rules, sample_line, sample_value, Prometheus};
use berth_tests::tools::run;

#[test]
fn prometheus_scrapes_the_edge_and_the_inventory_shows_its_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let config = default_config(&dir.path().join("data"));
    let mut core = Core::start_in(dir, &config);
    let pki = tempfile::tempdir().unwrap();
    make_ca(&pki.path().join("ca"));
    let (cert, key) = issue(
        &pki.path().join("ca"),
        &pki.path().join("leaf"),
        "server",
        &["registry.test"],
        &["127.0.0.1"],
    );
    let ca = pki.path().join("ca/ca.crt");
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(2, |p| {
        format!(
            "state_dir: ./state\nhealth_check_interval: 200ms\nmetrics: {{ listen: 127.0.0.1:{} }}\n\
             listeners:\n  - name: hosted\n    listen: 127.0.0.1:{}\n    \
             tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[1],
            p[0],
            cert.display(),
            key.display()
        )
    });
    let port = edge.ports[0];
    let metrics = format!("127.0.0.1:{}", edge.ports[1]);
    for _ in 0..3 {
        let ok = run(curl(&ca, "registry.test", "127.0.0.1", port)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://registry.test:{port}/v2/")));
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    }
    // Two clients that do not trust the edge's CA.
    let stranger = tempfile::tempdir().unwrap();
    make_ca(stranger.path());
    for _ in 0..2 {
        let out = curl(
            &stranger.path().join("ca.crt"),
            "registry.test",
            "127.0.0.1",
            port,
        )
        .arg(format!("https://registry.test:{port}/v2/"))
        .output()
        .unwrap();
        assert!(!out.status.success());
    }

    // The exposition. The access line (and the counters) follow the response: poll briefly.
    let requests = format!(
        "berth_edge_http_requests_total{{listener=\"hosted\",upstream=\"{upstream}\",status=\"200\"}}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let body = loop {
        let r = request(&metrics, "GET", "/metrics", &[], b"").unwrap();
        assert_eq!(r.status, 200);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"));
        let body = String::from_utf8_lossy(&r.body).to_string();
        let done = sample_line(&body, &requests).is_some_and(|l| sample_value(l) == 3.0)
            && body.contains("reason=\"client_rejected_certificate\"} 2");
        if done || Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        sample_value(sample_line(&body, &requests).expect(&body)),
        3.0
    );
    let handshakes = sample_line(
        &body,
        "berth_edge_tls_handshakes_total{listener=\"hosted\"}",
    )
    .expect(&body);
    assert_eq!(sample_value(handshakes), 3.0, "{body}");
    assert!(
        body.contains(
            "berth_edge_tls_handshake_failures_total{reason=\"client_rejected_certificate\"} 2"
        ),
        "{body}"
    );
    assert!(
        body.contains(&format!(
            "berth_edge_upstream_up{{upstream=\"{upstream}\"}} 1"
        )),
        "{body}"
    );
    let expiry = sample_line(
        &body,
        "berth_edge_certificate_expiry_seconds{listener=\"hosted\"",
    )
    .expect(&body);
    assert!(expiry.contains("source=\"file\""), "{expiry}");
    // berth-certs issues for 825 days.
    let days = sample_value(expiry) / 86400.0;
    assert!((823.0..=826.0).contains(&days), "{expiry}");
    assert!(body.contains("berth_edge_http_request_duration_seconds_bucket"));

    // Health and the inventory.
    assert_eq!(
        request(&metrics, "GET", "/healthz", &[], b"")
            .unwrap()
            .status,
        200
    );
    let ready = request(&metrics, "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(
        ready.status,
        200,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    let certs = request(&metrics, "GET", "/certs", &[], b"").unwrap().json();
    let c = &certs["certificates"][0];
    assert_eq!(c["listener"], "hosted", "{certs}");
    assert_eq!(c["source"], "file");
    assert_eq!(c["sans"][0], "DNS:registry.test", "{certs}");
    assert!(c["issuer"].as_str().unwrap().contains("Berth"), "{certs}");
    assert!(c["last_reload_error"].is_null());
    let config = edge.dir.path().join("proxy.yaml");
    let table = run(Command::new(berth_tests::bin("berth-proxy"))
        .args(["certs", "--config"])
        .arg(&config));
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.starts_with("PROCESS"), "{table}");
    assert!(
        table.contains("DNS:registry.test") && table.contains(" ok"),
        "{table}"
    );
    let json = run(Command::new(berth_tests::bin("berth-proxy"))
        .args(["certs", "--json", "--config"])
        .arg(&config));
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["certificates"][0]["not_after"], c["not_after"]);

    // Through Prometheus, with the edge's rules and dashboard.
    let prom = Prometheus::scraping(&[("berth-edge", &metrics)]);
    let up = prom.query("up{job=\"berth-edge\"}");
    assert_eq!(up[0]["value"][1], "1");
    let served = prom.query("sum(berth_edge_http_requests_total{listener=\"hosted\"})");
    assert_eq!(served[0]["value"][1], "3", "{served:?}");
    let soonest = prom.query("min(berth_edge_certificate_expiry_seconds) > 800 * 86400");
    assert_eq!(soonest.len(), 1, "{soonest:?}");
    let groups = prom.rule_groups();
    let edge_rules = groups
        .iter()
        .find(|g| g["name"] == "berth-edge")
        .and_then(|g| g["rules"].as_array())
        .unwrap_or_else(|| panic!("{groups:?}"));
    assert!(
        edge_rules
            .iter()
            .any(|r| r["name"] == "BerthCertificateExpiringSoon"),
        "{groups:?}"
    );
    assert!(prom.check_dashboard("grafana/berth-edge.json") >= 6);
    promtool_check_rules();

    // The core goes away: the listener has nowhere to send requests.
    core.kill9();
    let deadline = Instant::now() + Duration::from_secs(10);
    let ready = loop {
        let r = request(&metrics, "GET", "/readyz", &[], b"").unwrap();
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["listeners"][0]["healthy_upstreams"], 0);
}
