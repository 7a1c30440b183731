//! A real Prometheus server (Debian `prometheus`) scraping Berth's metrics listeners every
//! second, with the alert rules from `deploy/` loaded, and its HTTP query API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::edge::free_port;
use crate::http::request;

/// A Prometheus process, killed on drop.
pub struct Prometheus {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

/// A file under `deploy/`.
pub fn deploy(rel: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(rel)
}

fn encode(q: &str) -> String {
    q.bytes().map(|b| format!("%{b:02X}")).collect()
}

impl Prometheus {
    /// Scrapes each `(job, target)` every second.
    pub fn scraping(jobs: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("prometheus.yml");
        let mut text = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [\"{}\"]\n\
             scrape_configs:\n",
            deploy("prometheus/berth-alerts.yml").display()
        );
        for (job, target) in jobs {
            text.push_str(&format!(
                "  - job_name: {job}\n    static_configs: [{{ targets: [\"{target}\"] }}]\n"
            ));
        }
        std::fs::write(&config, text).expect("prometheus.yml");
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
    pub fn query(&self, q: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/query?query={}", encode(q));
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

    /// An instant query's status and error, whatever its result.
    pub fn check(&self, q: &str) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", encode(q));
        request(&self.addr, "GET", &path, &[], b"")
            .expect("prometheus answers")
            .json()
    }

    /// The loaded rule groups (`/api/v1/rules`), by curl: Prometheus answers it chunked. Waits
    /// until the rule manager lists some: it starts after the first scrapes can already answer.
    pub fn rule_groups(&self) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "10"])
                .arg(format!("http://{}/api/v1/rules", self.addr))
                .output()
                .expect("curl");
            let rules: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            match rules["data"]["groups"].as_array() {
                Some(groups) if !groups.is_empty() => return groups.clone(),
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
                _ => panic!("rules: {rules}"),
            }
        }
    }

    /// Runs every query of a Grafana dashboard under `deploy/`; returns how many there were.
    pub fn check_dashboard(&self, rel: &str) -> usize {
        let text = std::fs::read_to_string(deploy(rel)).expect("dashboard");
        let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
        let mut n = 0;
        for panel in dashboard["panels"].as_array().expect("panels") {
            for t in panel["targets"].as_array().expect("targets") {
                let q = t["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$__rate_interval", "1m");
                let v = self.check(&q);
                assert_eq!(v["status"], "success", "{q}: {v}");
                n += 1;
            }
        }
        n
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `promtool check rules` on the alert rules in `deploy/`.
pub fn promtool_check_rules() {
    let check = Command::new("promtool")
        .args(["check", "rules"])
        .arg(deploy("prometheus/berth-alerts.yml"))
        .output()
        .expect("promtool");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// The exposition text a metrics listener (core or edge) serves now.
pub fn scrape(addr: &str) -> String {
    let r = request(addr, "GET", "/metrics", &[], b"").expect("metrics listener answers");
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The first sample line of `text` that starts with `prefix` (a name and some labels).
pub fn sample_line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(prefix))
}

/// The value of a sample line.
pub fn sample_value(line: &str) -> f64 {
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {line}"))
}

/// The value of the first sample starting with `prefix`, 0 when there is none yet.
pub fn sample(text: &str, prefix: &str) -> f64 {
    sample_line(text, prefix).map_or(0.0, sample_value)
}
