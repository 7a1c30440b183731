//! One certificate inventory for a deployment: the core's direct-HTTPS connectors on its
//! metrics listener (`/certs`, `berth_certificate_expiry_seconds`, reloads counted), and
//! `berth-proxy certs --core ADDR` listing them beside the edge's own. A rotated file shows up
//! live, a broken one is reported while the previous certificate keeps serving, and a
//! short-lived certificate sets off the alert rule in `deploy/` in a real Prometheus.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::core::Core;
use berth_tests::edge::{curl, free_port, issue, make_ca, Edge};
use berth_tests::http::request;
use berth_tests::prometheus::{sample, sample_line, sample_value, scrape, Prometheus};
use berth_tests::tools::run;
use serde_json::Value;

/// The core's `/certs` document, once `done` holds for it (10 s at most).
fn certs_when(metrics: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let doc = request(metrics, "GET", "/certs", &[], b"").unwrap().json();
        if done(&doc) {
            return doc;
        }
        assert!(Instant::now() < deadline, "{what}: {doc}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Replaces a certificate pair in place the way an operator's tooling does: key, then cert,
/// each by rename.
fn install(from: (&Path, &Path), to: (&Path, &Path)) {
    for (src, dst) in [(from.1, to.1), (from.0, to.0)] {
        let tmp = dst.with_extension("new");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }
}

/// The status code curl gets from `https://NAME:PORT/v2/`, trusting `ca`.
fn status(ca: &Path, name: &str, port: u16) -> String {
    let out = run(curl(ca, name, "127.0.0.1", port)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://{name}:{port}/v2/")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn core_connector_certificates_are_in_the_inventory_beside_the_edges() {
    let pki = tempfile::tempdir().unwrap();
    let ca_dir = pki.path().join("ca");
    make_ca(&ca_dir);
    let ca = ca_dir.join("ca.crt");
    let issued = pki.path().join("issued");
    let first = issue(&ca_dir, &issued, "first", &["registry.test"], &[]);
    let live = pki.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let (cert, key) = (live.join("tls.crt"), live.join("tls.key"));
    install((&first.0, &first.1), (&cert, &key));

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         metrics: {{ listen: 127.0.0.1:0 }}\nrepositories:\n  - name: direct\n    kind: hosted\n    \
         connector:\n      http: 127.0.0.1:0\n      \
         https: {{ listen: 127.0.0.1:0, cert: {}, key: {} }}\n",
        dir.path().join("data").display(),
        cert.display(),
        key.display()
    );
    let core = Core::start_in(dir, &config);
    let metrics = core.metrics.clone().expect("a metrics listener");
    let https: u16 = core.https_connectors["direct"]
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(status(&ca, "registry.test", https), "200");

    // The live inventory and the expiry metric.
    let doc = request(&metrics, "GET", "/certs", &[], b"").unwrap().json();
    let c = &doc["certificates"][0];
    assert_eq!(c["listener"], "direct", "{doc}");
    assert_eq!(c["source"], "file");
    assert_eq!(c["sans"][0], "DNS:registry.test", "{doc}");
    assert!(c["last_reload_error"].is_null(), "{doc}");
    let text = scrape(&metrics);
    let expiry = sample_line(
        &text,
        "berth_certificate_expiry_seconds{repository=\"direct\"",
    )
    .unwrap_or_else(|| panic!("{text}"));
    let days = sample_value(expiry);
    assert!(
        (823.0 * 86400.0..=826.0 * 86400.0).contains(&days),
        "{expiry}"
    );

    // Rotation: a short-lived certificate for another name replaces the files; the connector
    // serves it without a restart and the inventory says so.
    let short = Command::new(berth_tests::bin("berth-certs"))
        .args(["issue", "--ca"])
        .arg(&ca_dir)
        .arg("--out")
        .arg(&issued)
        .args(["--name", "second", "--host", "rotated.test", "--days", "7"])
        .status()
        .unwrap();
    assert!(short.success());
    let second = (issued.join("second.crt"), issued.join("second.key"));
    install((&second.0, &second.1), (&cert, &key));
    let doc = certs_when(&metrics, "the rotated certificate", |d| {
        d["certificates"][0]["sans"][0] == "DNS:rotated.test"
            && d["certificates"][0]["last_reload_error"].is_null()
    });
    assert!(doc["certificates"][0]["days_left"].as_i64().unwrap() <= 7);
    assert_eq!(status(&ca, "rotated.test", https), "200");

    // A broken file: reported, counted, and the previous certificate keeps serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    let doc = certs_when(&metrics, "the failed reload", |d| {
        d["certificates"][0]["last_reload_error"].is_string()
    });
    assert_eq!(doc["certificates"][0]["sans"][0], "DNS:rotated.test");
    assert_eq!(status(&ca, "rotated.test", https), "200");
    let errors = sample(
        &scrape(&metrics),
        "berth_certificate_reloads_total{repository=\"direct\",result=\"error\"}",
    );
    assert!(errors >= 1.0, "{errors}");
    assert!(core.log().contains("certificate reload failed"));

    // One table for the edge and the core; a core that does not answer fails the command.
    let upstream = core.connector("direct").to_owned();
    let edge_pair = issue(&ca_dir, &issued, "edge", &["edge.test"], &[]);
    let edge = Edge::start(2, |p| {
        format!(
            "state_dir: ./state\nmetrics: {{ listen: 127.0.0.1:{} }}\n\
             listeners:\n  - name: front\n    listen: 127.0.0.1:{}\n    \
             tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[1],
            p[0],
            edge_pair.0.display(),
            edge_pair.1.display()
        )
    });
    let proxy_yaml = edge.dir.path().join("proxy.yaml");
    let certs = |extra: &[String]| {
        Command::new(berth_tests::bin("berth-proxy"))
            .args(["certs", "--config"])
            .arg(&proxy_yaml)
            .args(extra)
            .output()
            .unwrap()
    };
    let table = certs(&["--core".into(), metrics.clone()]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.starts_with("PROCESS"), "{table}");
    let edge_row = table.lines().find(|l| l.starts_with("edge ")).unwrap();
    assert!(edge_row.contains("front") && edge_row.contains("DNS:edge.test"));
    let core_row = table
        .lines()
        .find(|l| l.starts_with(&format!("core {metrics}")))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        core_row.contains("direct")
            && core_row.contains("DNS:rotated.test")
            && core_row.contains("FAILED"),
        "{core_row}"
    );
    let json = certs(&["--json".into(), "--core".into(), metrics.clone()]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["certificates"][0]["listener"], "front", "{json}");
    assert_eq!(json["cores"][0]["address"], metrics.as_str(), "{json}");
    assert_eq!(json["cores"][0]["certificates"][0]["listener"], "direct");
    let gone = format!("127.0.0.1:{}", free_port());
    let failed = certs(&["--core".into(), gone.clone()]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains(&gone), "{err}");
    assert!(String::from_utf8_lossy(&failed.stdout).contains("edge.test"));

    // The alert rule in deploy/ notices the 7-day certificate.
    let prom = Prometheus::scraping(&[("berth-core", &metrics)]);
    let alert = prom.query("ALERTS{alertname=\"BerthCoreCertificateExpiringSoon\"}");
    assert_eq!(alert[0]["metric"]["repository"], "direct", "{alert:?}");
    assert_eq!(alert[0]["metric"]["alertstate"], "pending");
}
