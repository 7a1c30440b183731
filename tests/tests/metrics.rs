//! Metrics and probes against a real Prometheus server (Debian `prometheus`): the core's
//! `metrics.listen` serves OpenMetrics text that Prometheus scrapes, and the series of real
//! pushes, pulls and a collection come back through Prometheus's query API. `/healthz` and
//! `/readyz` answer on the metrics listener and on the main port.

#![allow(clippy::unwrap_used)]

use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::prometheus::{promtool_check_rules, Prometheus};
use berth_tests::registry::{get, oci_manifest, push_blob, put_manifest};

#[test]
fn prometheus_scrapes_the_core_and_the_probes_answer() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         metrics: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display()
    );
    let core = Core::start_in(dir, &config);
    let metrics = core.metrics.clone().expect("a metrics listener");
    let repo = core.connector("hosted").to_owned();
    let config = b"{}".to_vec();
    let layer = vec![1u8; 10_000];
    for b in [&config, &layer] {
        assert_eq!(push_blob(&repo, "app", b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[&layer]);
    assert_eq!(put_manifest(&repo, "app", "v1", &m).unwrap().status, 201);
    for _ in 0..3 {
        assert_eq!(get(&repo, "app", "manifests", "v1").unwrap().status, 200);
    }
    // A HEAD states the length of a body it does not send: not counted as bytes sent.
    let head = request(
        &repo,
        "HEAD",
        &format!("/v2/app/blobs/{}", http::digest(&layer)),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(head.status, 200);
    let blob = request(
        &repo,
        "GET",
        &format!("/v2/app/blobs/{}", http::digest(&layer)),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(blob.status, 200);
    let gc = request(
        &core.main,
        "POST",
        "/berth/api/v1/gc?dry_run=true",
        &[("Content-Type", "application/json")],
        b"",
    )
    .unwrap();
    assert_eq!(gc.status, 200);

    // The exposition itself.
    let text = request(&metrics, "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(text.status, 200);
    assert!(text
        .header("content-type")
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let body = String::from_utf8_lossy(&text.body).to_string();
    assert!(
        body.contains(
            "berth_http_requests_total{repository=\"hosted\",route=\"manifest\",method=\"GET\",status=\"200\"} 3"
        ),
        "{body}"
    );
    assert!(
        body.contains("berth_http_request_duration_seconds_bucket"),
        "{body}"
    );
    assert!(body.contains("berth_uploads_in_progress 0"), "{body}");
    // The first GET read the manifest from the blob store, the next two from memory.
    assert!(
        body.contains("berth_manifest_cache_requests_total{result=\"miss\"} 1\n"),
        "{body}"
    );
    assert!(
        body.contains("berth_manifest_cache_requests_total{result=\"hit\"} 2\n"),
        "{body}"
    );
    assert!(
        body.contains(&format!("berth_manifest_cache_bytes {}\n", m.len())),
        "{body}"
    );
    // The store's totals: the config, the layer and the manifest.
    assert!(body.contains("berth_blob_store_blobs 3\n"), "{body}");
    let bytes = config.len() + layer.len() + m.len();
    assert!(
        body.contains(&format!("berth_blob_store_bytes {bytes}\n")),
        "{body}"
    );
    // Probes, on the metrics listener and on the main port; the connectors have none.
    for addr in [&metrics, &core.main] {
        assert_eq!(
            request(addr, "GET", "/healthz", &[], b"").unwrap().status,
            200
        );
        let ready = request(addr, "GET", "/readyz", &[], b"").unwrap();
        assert_eq!(ready.status, 200);
        assert_eq!(ready.json()["status"], "ready");
    }
    assert_eq!(
        request(&core.main, "GET", "/metrics", &[], b"")
            .unwrap()
            .status,
        404
    );

    // Through a real Prometheus.
    let prom = Prometheus::scraping(&[("berth-core", &metrics)]);
    let pulls = prom.query(
        "berth_http_requests_total{repository=\"hosted\",route=\"manifest\",method=\"GET\"}",
    );
    assert_eq!(pulls[0]["value"][1], "3", "{pulls:?}");
    let bytes = prom.query("berth_http_response_bytes_total{repository=\"hosted\",route=\"blob\"}");
    assert_eq!(bytes[0]["value"][1], "10000", "{bytes:?}");
    let gc = prom.query("berth_gc_runs_total{dry_run=\"true\"}");
    assert_eq!(gc[0]["value"][1], "1", "{gc:?}");
    let up = prom.query("up{job=\"berth-core\"}");
    assert_eq!(up[0]["value"][1], "1");

    // The alert rules in deploy/ load and evaluate; every dashboard query is valid PromQL over
    // the series the core really exports.
    let groups = prom.rule_groups();
    let core_rules = groups
        .iter()
        .find(|g| g["name"] == "berth-core")
        .and_then(|g| g["rules"].as_array())
        .unwrap_or_else(|| panic!("{groups:?}"));
    assert_eq!(core_rules.len(), 7, "{groups:?}");
    assert!(core_rules.iter().all(|r| r["health"] == "ok"), "{groups:?}");
    let exprs = prom.check_dashboard("grafana/berth-core.json");
    assert!(exprs >= 6);
    promtool_check_rules();
}
