//! Metrics and probes against a real Prometheus server (Debian `prometheus`): the core's
//! `metrics.listen` serves OpenMetrics text that Prometheus scrapes, and the series of real
//! pushes, pulls and a collection come back through Prometheus's query API. `/healthz` and
//! `/readyz` answer on the metrics listener and on the main port.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::core::Core;
use berth_tests::edge::free_port;
use berth_tests::http::{self, request};
use berth_tests::registry::{get, oci_manifest, push_blob, put_manifest};

struct Prometheus {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn scraping(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
                 rule_files: [\"{}\"]\n\
                 scrape_configs:\n  - job_name: berth-core\n    \
                 static_configs: [{{ targets: [\"{target}\"] }}]\n",
                deploy("prometheus/berth-alerts.yml").display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus)");
        Prometheus {
            child,
            addr,
            _dir: dir,
        }
    }

    /// The result vector of an instant query, once it is not empty (Prometheus needs a few
    /// scrapes first).
    fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let path = format!(
            "/api/v1/query?query={}",
            q.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = request(&self.addr, "GET", &path, &[], b"") {
                let v = r.json();
                if let Some(res) = v["data"]["result"].as_array().filter(|a| !a.is_empty()) {
                    return res.clone();
                }
            }
            assert!(Instant::now() < deadline, "no result for {q}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A file under `deploy/`.
fn deploy(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

impl Prometheus {
    /// An instant query's status and error, whatever its result.
    fn check(&self, q: &str) -> serde_json::Value {
        let path = format!(
            "/api/v1/query?query={}",
            q.bytes().map(|b| format!("%{b:02X}")).collect::<String>()
        );
        request(&self.addr, "GET", &path, &[], b"").unwrap().json()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
        &[],
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
    let prom = Prometheus::scraping(&metrics);
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
    // curl: Prometheus answers this one chunked.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://{}/api/v1/rules", prom.addr))
        .output()
        .unwrap();
    let rules: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let loaded = rules["data"]["groups"][0]["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("rules: {rules}"));
    assert_eq!(loaded.len(), 5, "{rules}");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/berth-core.json")).unwrap())
            .unwrap();
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            let q = t["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "1m");
            let v = prom.check(&q);
            assert_eq!(v["status"], "success", "{q}: {v}");
            exprs += 1;
        }
    }
    assert!(exprs >= 6);
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/berth-alerts.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
