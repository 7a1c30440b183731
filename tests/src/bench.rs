//! Pieces shared by the benchmarks: CNCF Distribution as the reference registry, nginx as the
//! reference TLS front, and wrk for request rates.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::edge::free_port;
use crate::http::request;

/// CNCF Distribution (`docker-registry`) on a free loopback port, killed on drop.
pub struct Distribution {
    pub child: Child,
    _dir: tempfile::TempDir,
    pub addr: String,
}

impl Distribution {
    pub fn start() -> Distribution {
        Distribution::start_with("")
    }

    /// Starts with extra top-level YAML (an `auth:` section, for instance).
    pub fn start_with(extra: &str) -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = format!(
            "storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n",
            dir.path().join("data").display()
        );
        Distribution::start_in(dir, &storage, extra)
    }

    /// Starts on the given `storage:` section (its s3 driver, for instance).
    pub fn start_s3(storage: &str) -> Distribution {
        Distribution::start_in(tempfile::tempdir().expect("tempdir"), storage, "")
    }

    fn start_in(dir: tempfile::TempDir, storage: &str, extra: &str) -> Distribution {
        // Distribution cannot take a pre-bound socket: pick a free port and retry on a clash.
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n{storage}http:\n  addr: {addr}\n"
            );
            std::fs::write(dir.path().join("config.yml"), format!("{config}{extra}"))
                .expect("config");
            // Distribution 2.8 panics at start when AWS_CA_BUNDLE is set.
            let mut child = Command::new("docker-registry")
                .env_remove("AWS_CA_BUNDLE")
                .arg("serve")
                .arg(dir.path().join("config.yml"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("docker-registry (Debian package) must be installed");
            if wait_http(&addr, &mut child) {
                return Distribution {
                    child,
                    _dir: dir,
                    addr,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("Distribution did not start");
    }
}

impl Distribution {
    /// Stops it (its data stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same address and data.
    pub fn resume(&mut self) {
        self.child = Command::new("docker-registry")
            .env_remove("AWS_CA_BUNDLE")
            .arg("serve")
            .arg(self._dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry");
        assert!(
            wait_http(&self.addr, &mut self.child),
            "Distribution did not come back"
        );
    }
}

fn wait_http(addr: &str, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        // 401 means up, with auth configured.
        if request(addr, "GET", "/v2/", &[], b"").is_ok_and(|r| r.status == 200 || r.status == 401)
        {
            return true;
        }
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

impl Drop for Distribution {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx: the reference TLS proxy ([`Nginx::start`]) or a fast webhook sink ([`Nginx::sink`]).
pub struct Nginx {
    pub child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// nginx terminating TLS in front of `upstream`, configured as Distribution's documented
    /// recipe has it (no body size limit, no request buffering, long read timeout, Host and
    /// X-Forwarded-Proto passed on), plus `proxy_buffering off` with a 128k buffer.
    pub fn start(upstream: &str, cert: &Path, key: &Path) -> Nginx {
        Nginx::launch(|port| {
            format!(
                "upstream registry {{ server {upstream}; keepalive 32; }}\n\
                 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n\
                 ssl_protocols TLSv1.2 TLSv1.3;\n    client_max_body_size 0;\n    chunked_transfer_encoding on;\n\
                 location /v2/ {{\n      proxy_pass http://registry;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_set_header Host $http_host;\n      proxy_set_header X-Real-IP $remote_addr;\n\
                 proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      proxy_set_header X-Forwarded-Proto $scheme;\n\
                 proxy_read_timeout 900;\n      proxy_request_buffering off;\n      proxy_buffering off;\n      proxy_buffer_size 128k;\n      proxy_buffers 4 128k;\n      proxy_busy_buffers_size 256k;\n    }}\n  }}\n",
                cert.display(),
                key.display()
            )
        })
    }

    /// A webhook endpoint as fast as a receiver gets: plain HTTP answering 200 to every
    /// request, one line per request in [`Nginx::access_log`].
    pub fn sink() -> Nginx {
        Nginx::launch(|port| {
            format!(
                "server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 0;\n\
                 location / {{ return 200; }}\n  }}\n"
            )
        })
    }

    /// The access log so far: one line per request answered.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// Starts nginx with `server(port)` (its upstream and server blocks) inside `http`.
    fn launch(server: impl Fn(u16) -> String) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            let d = dir.path().display();
            let conf = format!(
                "daemon off;\nmaster_process on;\nworker_processes 2;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}}}\n",
                server(port)
            );
            std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
            let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log");
            let mut child = Command::new("nginx")
                .arg("-c")
                .arg(dir.path().join("nginx.conf"))
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("nginx (Debian package nginx-light) must be installed");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx { child, port, dir };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("nginx exited: {status}");
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        panic!(
            "nginx did not start: {}{}",
            log("stderr.log"),
            log("error.log")
        );
    }

    /// The master and its workers.
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        let out = Command::new("pgrep")
            .arg("-P")
            .arg(master.to_string())
            .output();
        if let Ok(out) = out {
            pids.extend(
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse::<u32>().ok()),
            );
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-QUIT")
            .arg(self.child.id().to_string())
            .status();
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

/// wrk results.
pub struct Wrk {
    pub rps: f64,
    pub p99_ms: f64,
    pub requests: f64,
}

/// Runs `wrk -t2 -c16 -d10s --latency` against `url`, asserting no non-2xx answers.
pub fn wrk(url: &str, accept: &str) -> Wrk {
    wrk_with(url, &[format!("Accept: {accept}")])
}

/// [`wrk`] with any request headers (`Name: value`).
pub fn wrk_with(url: &str, headers: &[String]) -> Wrk {
    let mut c = Command::new("wrk");
    c.args(["-t2", "-c16", "-d10s", "--latency"]);
    for h in headers {
        c.arg("-H").arg(h);
    }
    let out = c
        .arg(url)
        .output()
        .expect("wrk (Debian package wrk) must be installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |prefix: &str, idx: usize| {
        text.lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(idx))
            .map(str::to_owned)
    };
    let rps = field("Requests/sec:", 1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    let p99_ms = field("99%", 1).map(|v| parse_latency_ms(&v)).unwrap_or(0.0);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        !text.contains("Non-2xx") && rps > 0.0,
        "wrk saw errors:\n{text}"
    );
    Wrk {
        rps,
        p99_ms,
        requests,
    }
}

fn parse_latency_ms(v: &str) -> f64 {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len()));
    let n: f64 = num.parse().unwrap_or(0.0);
    match unit {
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        _ => n,
    }
}

/// Prints a table: one row per figure, one column per setup.
pub fn print_table(columns: &[&str], rows: &[(&str, Vec<f64>)]) {
    print!("\n{:<38}", "figure");
    for c in columns {
        print!(" {c:>16}");
    }
    println!();
    for (name, values) in rows {
        print!("{name:<38}");
        for v in values {
            print!(" {v:>16.3}");
        }
        println!();
    }
}

/// Touches `bytes` of fresh memory and gives it back, so the page cache a measured run fills
/// lands on memory the machine has used before.
///
/// On a virtual machine (this one, and most CI runners) the first touch of a guest page makes
/// the host back it: writing 256 MiB of a new file into never-used memory cost 0.94 s of
/// kernel time here, the same write after this warm-up 0.07 s. A server measured first would
/// pay that for everyone after it; a production host paid it once, long ago. Call it before
/// each measured run that writes much.
pub fn warm_memory(bytes: usize) {
    // Not zeros: a zeroed allocation is mapped lazily and touches nothing.
    let v = vec![1u8; bytes];
    drop(std::hint::black_box(v));
}
