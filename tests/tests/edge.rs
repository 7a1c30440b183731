//! The edge in front of the core, over real HTTPS with a CA made by `berth-certs`: forwarding
//! headers, real clients with certificate verification, SNI, certificate rotation, failover,
//! streaming of large uploads, start-up errors and draining shutdown.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_tests::core::{default_config, Core};
use berth_tests::edge::{curl, free_port, issue, make_ca, Edge};
use berth_tests::image::write_layout;
use berth_tests::proc;
use berth_tests::tools::{podman, run, skopeo};

/// A core behind the edge exactly as documented for the simplest setup: its YAML has no
/// `trusted_proxies` key, so the loopback edge is trusted by default (audit: with the key
/// absent every push through the edge once failed on an `http://` Location).
fn trusting_core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = default_config(&dir.path().join("data"));
    assert!(!config.contains("trusted_proxies"));
    Core::start_in(dir, &config)
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        make_ca(&dir.path().join("ca"));
        Pki { dir }
    }
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca")
    }
    fn ca_cert(&self) -> PathBuf {
        self.ca().join("ca.crt")
    }
    /// A directory with only `ca.crt`, as skopeo's and podman's `--cert-dir` want it (a `.key`
    /// there would be taken for a client certificate's key).
    fn trust_dir(&self) -> PathBuf {
        let d = self.dir.path().join("trust");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::copy(self.ca_cert(), d.join("ca.crt")).unwrap();
        d
    }
    fn issue(&self, name: &str, hosts: &[&str], ips: &[&str]) -> (PathBuf, PathBuf) {
        issue(&self.ca(), &self.dir.path().join("leaf"), name, hosts, ips)
    }
}

fn listener_yaml(port: u16, cert: &Path, key: &Path, upstreams: &str) -> String {
    format!(
        "  - name: l{port}\n    listen: 127.0.0.1:{port}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstreams}]\n",
        cert.display(),
        key.display()
    )
}

fn edge_for(core: &Core, pki: &Pki, extra: &str) -> Edge {
    let (cert, key) = pki.issue(
        "server",
        &["registry.test", "localhost"],
        &["127.0.0.1", "::1"],
    );
    let upstream = core.connector("hosted").to_owned();
    Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nhealth_check_interval: 200ms\n{extra}listeners:\n{}",
            listener_yaml(p[0], &cert, &key, &upstream)
        )
    })
}

fn header(out: &str, name: &str) -> Option<String> {
    out.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&format!("{name}:")))
        .map(|l| {
            l.split_once(':')
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        })
}

#[test]
fn location_is_external_and_client_forwarded_headers_are_replaced() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .args([
            "-H",
            "X-Forwarded-Host: evil.example",
            "-H",
            "X-Forwarded-Proto: http",
            "-H",
            "X-Forwarded-Port: 1",
        ])
        .arg(format!(
            "https://registry.test:{port}/v2/team/app/blobs/uploads/"
        )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/2 202"), "{text}");
    let loc = header(&text, "location").expect("location");
    let prefix = format!("https://registry.test:{port}/v2/team/app/blobs/uploads/");
    assert!(loc.starts_with(&prefix), "{loc}");
    assert_eq!(loc.matches(&format!(":{port}")).count(), 1, "{loc}");
    assert_eq!(
        header(&text, "docker-distribution-api-version").as_deref(),
        Some("registry/2.0")
    );

    // Over HTTP/1.1 too, and the upload completes through the external URL.
    let path = &loc["https://registry.test:".len() + port.to_string().len()..];
    let body = b"through the edge";
    let digest = berth_tests::http::digest(body);
    let data = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(data.path(), body).unwrap();
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--http1.1",
            "-X",
            "PUT",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "--data-binary",
        ])
        .arg(format!("@{}", data.path().display()))
        .arg(format!(
            "https://registry.test:{port}{path}?digest={digest}"
        )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 201"), "{text}");
    assert_eq!(
        header(&text, "location"),
        Some(format!(
            "https://registry.test:{port}/v2/team/app/blobs/{digest}"
        ))
    );
}

#[test]
fn skopeo_and_podman_verify_and_use_the_edge() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let reg = format!("localhost:{}", edge.ports[0]);
    let work = tempfile::tempdir().unwrap();
    let multi = write_layout(
        &work.path().join("multi"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[300_000],
        11,
    );
    let ca_dir = pki.trust_dir();

    // A client with another CA must refuse the edge.
    let other = Pki::new();
    let refused = skopeo()
        .args(["copy", "--all", "--dest-cert-dir"])
        .arg(other.trust_dir())
        .arg(format!("oci:{}:v1", work.path().join("multi").display()))
        .arg(format!("docker://{reg}/sk/multi:v1"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    run(skopeo()
        .args(["copy", "--all", "--dest-cert-dir"])
        .arg(&ca_dir)
        .arg(format!("oci:{}:v1", work.path().join("multi").display()))
        .arg(format!("docker://{reg}/sk/multi:v1")));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&ca_dir)
        .arg(format!("docker://{reg}/sk/multi:v1")));
    assert_eq!(berth_tests::http::digest(&raw.stdout), multi.top);

    let root = work.path().join("podman");
    let remote = format!("{reg}/sk/multi:v1");
    run(podman(&root)
        .args(["pull", "--cert-dir"])
        .arg(&ca_dir)
        .arg(&remote));
    let pushed = format!("{reg}/podman/copy:v1");
    run(podman(&root).args(["tag", &remote, &pushed]));
    run(podman(&root)
        .args(["push", "--cert-dir"])
        .arg(&ca_dir)
        .arg(&pushed));
    let tags = run(skopeo()
        .args(["list-tags", "--cert-dir"])
        .arg(&ca_dir)
        .arg(format!("docker://{reg}/podman/copy")));
    assert!(String::from_utf8_lossy(&tags.stdout).contains("\"v1\""));
}

#[test]
fn sni_picks_the_certificate() {
    let core = trusting_core();
    let pki = Pki::new();
    let (a_cert, a_key) = pki.issue("a", &["a.test"], &[]);
    let (b_cert, b_key) = pki.issue("b", &["b.test"], &[]);
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    sni:\n      - {{ names: [b.test], cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], a_cert.display(), a_key.display(), b_cert.display(), b_key.display()
        )
    });
    let port = edge.ports[0];
    for name in ["a.test", "b.test"] {
        let out = run(curl(&pki.ca_cert(), name, "127.0.0.1", port)
            .args(["-v", "-o", "/dev/null"])
            .arg(format!("https://{name}:{port}/v2/")));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("CN={name}")), "{name}: {err}");
    }
}

/// Runs GET /v2/ through the edge in a loop until stopped; counts successes and failures.
fn traffic(
    ca: PathBuf,
    port: u16,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut errors = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let out = curl(&ca, "registry.test", "127.0.0.1", port)
                .args(["--fail", "-o", "/dev/null"])
                .arg(format!("https://registry.test:{port}/v2/"))
                .output()
                .unwrap();
            if out.status.success() {
                ok.fetch_add(1, Ordering::SeqCst);
            } else {
                failed.fetch_add(1, Ordering::SeqCst);
                errors.push(String::from_utf8_lossy(&out.stderr).into_owned());
            }
        }
        errors
    })
}

fn served_subject(ca: &Path, port: u16) -> String {
    let out = run(curl(ca, "registry.test", "127.0.0.1", port)
        .args(["-v", "-o", "/dev/null"])
        .arg(format!("https://registry.test:{port}/v2/")));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    err.lines()
        .find(|l| l.contains("subject:"))
        .unwrap_or("")
        .to_owned()
}

#[test]
fn certificates_rotate_under_traffic_and_a_broken_one_is_refused() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let live = pki.dir.path().join("leaf");
    assert!(served_subject(&pki.ca_cert(), port).contains("CN=registry.test"));

    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let load = traffic(
        pki.ca_cert(),
        port,
        stop.clone(),
        ok.clone(),
        failed.clone(),
    );
    std::thread::sleep(Duration::from_millis(500));

    // Rotate: a new certificate whose first name (the CN) differs, written over the old files.
    let (new_cert, new_key) = pki.issue("next", &["rotated.test", "registry.test"], &["127.0.0.1"]);
    std::fs::copy(&new_key, live.join("server.key.new")).unwrap();
    std::fs::copy(&new_cert, live.join("server.crt.new")).unwrap();
    std::fs::rename(live.join("server.key.new"), live.join("server.key")).unwrap();
    std::fs::rename(live.join("server.crt.new"), live.join("server.crt")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_subject(&pki.ca_cert(), port).contains("CN=rotated.test") {
        assert!(
            Instant::now() < deadline,
            "new certificate never served:\n{}",
            edge.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));

    // A broken certificate: the last good one keeps serving, and the failure is logged.
    std::fs::write(
        live.join("server.crt"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    edge.signal("HUP");
    std::thread::sleep(Duration::from_millis(800));
    assert!(served_subject(&pki.ca_cert(), port).contains("CN=rotated.test"));
    assert!(
        edge.log().contains("certificate reload failed"),
        "{}",
        edge.log()
    );

    stop.store(true, Ordering::SeqCst);
    let errors = load.join().unwrap();
    assert!(
        ok.load(Ordering::SeqCst) > 10,
        "too little traffic to mean anything"
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "failed requests during rotation: {errors:?}"
    );
}

#[test]
fn one_core_down_requests_keep_succeeding() {
    let a = trusting_core();
    let mut b = trusting_core();
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", &["registry.test"], &["127.0.0.1"]);
    let ups = format!("{}, {}", a.connector("hosted"), b.connector("hosted"));
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nhealth_check_interval: 200ms\nlisteners:\n{}",
            listener_yaml(p[0], &cert, &key, &ups)
        )
    });
    let port = edge.ports[0];
    let get = || {
        curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
            .args(["--fail", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://registry.test:{port}/v2/"))
            .output()
            .unwrap()
    };
    for _ in 0..4 {
        assert!(get().status.success());
    }
    b.kill9();
    // Immediately, before any health check noticed: refused connections are retried elsewhere.
    for i in 0..20 {
        let out = get();
        assert!(
            out.status.success(),
            "request {i} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            edge.log()
        );
    }
}

#[test]
fn a_2_gib_chunked_upload_streams_with_flat_edge_memory() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    const SIZE: u64 = 2 << 30;
    let digest = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            h.update(&zeros);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!(
            "https://registry.test:{port}/v2/big/blobs/uploads/"
        )));
    let loc = header(&String::from_utf8_lossy(&out.stdout), "location").expect("location");
    let before = proc::rss_mib(edge.pid());
    proc::reset_peak(edge.pid());
    // Docker's way: one PATCH with a chunked body of unknown length.
    let mut patch = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--max-time",
            "600",
            "--fail",
            "-X",
            "PATCH",
            "-T",
            "-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(&loc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = patch.stdin.take().unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            stdin.write_all(&zeros).unwrap();
        }
    }
    let out = patch.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "202",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let growth = proc::peak_rss_mib(edge.pid()) - before;
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--fail",
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{loc}?digest={digest}")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
    eprintln!("edge RSS grew {growth:.1} MiB during a 2 GiB upload");
    assert!(
        growth < 64.0,
        "edge RSS grew {growth:.1} MiB: the body is being buffered"
    );
}

#[test]
fn start_up_errors_name_the_listener_and_cause() {
    let pki = Pki::new();
    let (cert, key) = pki.issue("server", &["registry.test"], &[]);
    let (_, other_key) = pki.issue("other", &["other.test"], &[]);
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    let cases = [
        (
            listener_yaml(busy, &cert, &key, "127.0.0.1:1"),
            "cannot listen",
        ),
        (
            listener_yaml(free_port(), &cert, &other_key, "127.0.0.1:1"),
            "do not belong together",
        ),
        (
            listener_yaml(
                free_port(),
                Path::new("/nonexistent.crt"),
                &key,
                "127.0.0.1:1",
            ),
            "/nonexistent.crt",
        ),
    ];
    for (listener, expect) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("state_dir: ./state\nlisteners:\n{listener}");
        let err = match Edge::try_start(dir, vec![], &|_| config.clone()) {
            Ok(_) => panic!("edge started with a bad config: {config}"),
            Err(e) => e,
        };
        assert!(err.contains(expect), "expected {expect:?} in: {err}");
        assert!(
            err.contains("listener l"),
            "the listener is not named: {err}"
        );
    }
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let core = trusting_core();
    let pki = Pki::new();
    let mut edge = edge_for(&core, &pki, "drain_timeout: 2m\n");
    let port = edge.ports[0];
    // A 200 MiB blob, downloaded slowly enough to be in flight when SIGTERM arrives.
    let digest = push_200_mib(core.connector("hosted"));
    let download = slow_download(&pki, port, &digest);
    std::thread::sleep(Duration::from_millis(1000));
    edge.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    // No new connections once draining...
    let refused = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["--fail", "-o", "/dev/null"])
        .arg(format!("https://registry.test:{port}/v2/"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a new request was accepted while draining"
    );
    // ...the in-flight download completes...
    let out = download.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "in-flight download was cut: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (200u64 << 20).to_string()
    );
    // ...and the edge exits once idle, long before the 120 s deadline.
    assert!(
        edge.wait_exit(Duration::from_secs(30)),
        "edge still running after draining:\n{}",
        edge.log()
    );
}

#[test]
fn failed_handshakes_are_not_logged_as_errors() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let other = Pki::new();
    for _ in 0..5 {
        let out = curl(&other.ca_cert(), "registry.test", "127.0.0.1", port)
            .arg(format!("https://registry.test:{port}/v2/"))
            .output()
            .unwrap();
        assert!(!out.status.success());
    }
    let ok = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://registry.test:{port}/v2/")));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    // The access line is written after the response has gone out: wait for it briefly.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut log = edge.log();
    while !log.contains("access") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        log = edge.log();
    }
    assert!(
        !log.contains("ERROR"),
        "handshake failures flood the log:\n{log}"
    );
    assert!(log.contains("access"), "access log missing:\n{log}");
}

#[test]
fn docker_verifies_the_edge_through_certs_d() {
    // Docker skips TLS verification for 127.0.0.0/8, so the registry gets a name that
    // resolves only to ::1 and the edge listens there.
    let core = trusting_core();
    let pki = Pki::new();
    let name = "registry.berth.test";
    let (cert, key) = pki.issue("docker", &[name], &["::1"]);
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: \"[::1]:{}\"\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], cert.display(), key.display()
        )
    });
    let port = edge.ports[0];
    let hosts = HostsEntry::add(&format!("::1 {name}"));
    let trust_root = PathBuf::from("/");
    let certs_d = trust_root.join(format!("etc/docker/certs.d/{name}:{port}"));
    let _cleanup = RemoveDir(certs_d.clone());
    let _cleanup2 = RemoveDir(trust_root.join(format!("etc/containers/certs.d/{name}:{port}")));

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("dimg");
    write_layout(&layout, "v1", &[("linux", "amd64")], &[400_000], 21);
    let dockerd = berth_tests::tools::Dockerd::start();
    let remote = format!("{name}:{port}/docker/tls:v1");
    run(skopeo()
        .args(["copy", "--dest-daemon-host"])
        .arg(format!("unix://{}", dockerd.socket.display()))
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-daemon:{remote}")));

    // Without trust: docker must refuse the certificate.
    let refused = dockerd.docker().args(["push", &remote]).output().unwrap();
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("x509") || err.contains("certificate"), "{err}");

    // berth-certs installs the CA where docker looks; now push and pull work.
    run(Command::new(berth_tests::bin("berth-certs"))
        .args(["docker-trust", &format!("{name}:{port}"), "--ca"])
        .arg(pki.ca()));
    assert!(certs_d.join("ca.crt").exists());
    run(dockerd.docker().args(["push", &remote]));
    run(dockerd.docker().args(["rmi", &remote]));
    run(dockerd.docker().args(["pull", &remote]));
    drop(hosts);
}

/// Adds a line to /etc/hosts for the test's duration.
struct HostsEntry(String);

impl HostsEntry {
    fn add(line: &str) -> HostsEntry {
        let original = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        std::fs::write("/etc/hosts", format!("{original}{line}\n"))
            .expect("writing /etc/hosts (tests run as root)");
        HostsEntry(original)
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/hosts", &self.0);
    }
}

struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn core_serves_https_directly_without_the_edge() {
    let pki = Pki::new();
    let (_core, port) = direct_https_core(&pki);
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!(
            "https://registry.test:{port}/v2/app/blobs/uploads/"
        )));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 202"), "{text}");
    let loc = header(&text, "location").unwrap_or_default();
    assert!(
        loc.starts_with(&format!(
            "https://registry.test:{port}/v2/app/blobs/uploads/"
        )),
        "{loc}"
    );

    let work = tempfile::tempdir().unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64")],
        &[100_000],
        31,
    );
    run(skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(pki.trust_dir())
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://localhost:{port}/direct/app:v1")));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(pki.trust_dir())
        .arg(format!("docker://localhost:{port}/direct/app:v1")));
    assert_eq!(berth_tests::http::digest(&raw.stdout), img.top);
}

#[test]
fn host_names_on_one_port_route_to_their_own_cores() {
    let a = trusting_core();
    let b = trusting_core();
    let pki = Pki::new();
    let (cert, key) = pki.issue("multi", &["a.test", "b.test"], &[]);
    let (ua, ub) = (
        a.connector("hosted").to_owned(),
        b.connector("hosted").to_owned(),
    );
    let edge = Edge::start(1, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    hosts:\n      - {{ names: [a.test], upstreams: [{ua}] }}\n      - {{ names: [B.test], upstreams: [{ub}] }}\n",
            p[0], cert.display(), key.display()
        )
    });
    let port = edge.ports[0];
    let blob = b"only in core a";
    let d = berth_tests::http::digest(blob);
    let r = berth_tests::http::request(
        &ua,
        "POST",
        &format!("/v2/app/blobs/uploads/?digest={d}"),
        &[],
        blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    let status = |name: &str| {
        let out = run(curl(&pki.ca_cert(), name, "127.0.0.1", port)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("https://{name}:{port}/v2/app/blobs/{d}")));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(status("a.test"), "200");
    assert_eq!(
        status("b.test"),
        "404",
        "b.test must reach core b, which lacks the blob"
    );
    // A host with no route and no default upstreams is refused, not sent anywhere.
    let out = curl(&pki.ca_cert(), "a.test", "127.0.0.1", port)
        .args([
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            "Host: c.test",
        ])
        .arg(format!("https://a.test:{port}/v2/"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "421");
}

#[test]
fn only_tls_1_2_and_1_3_are_offered() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let url = format!("https://registry.test:{port}/v2/");
    let old = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["--tlsv1.1", "--tls-max", "1.1", "-o", "/dev/null"])
        .arg(&url)
        .output()
        .unwrap();
    assert!(!old.status.success(), "TLS 1.1 was accepted");
    for (v, alpn) in [("1.2", "--http1.1"), ("1.3", "--http2")] {
        let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
            .args([
                &format!("--tlsv{v}"),
                "--tls-max",
                v,
                alpn,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{http_version}",
            ])
            .arg(&url));
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let want_version = if alpn == "--http2" { "2" } else { "1.1" };
        assert_eq!(got, format!("200 {want_version}"), "TLS {v}");
    }
}

#[test]
fn a_client_that_disconnects_mid_upload_can_resume() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!(
            "https://registry.test:{port}/v2/resume/blobs/uploads/"
        )));
    let loc = header(&String::from_utf8_lossy(&out.stdout), "location").expect("location");
    const TOTAL: u64 = 64 << 20;
    // Send half the bytes of a chunked PATCH, then die.
    let mut patch = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "PATCH", "-T", "-", "-o", "/dev/null"])
        .arg(&loc)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = patch.stdin.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..((TOTAL / 2) >> 20) {
            berth_tests::image::Pattern::fill_at(i << 20, &mut buf);
            stdin.write_all(&buf).unwrap();
        }
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let _ = patch.kill();
    }
    let _ = patch.wait();
    std::thread::sleep(Duration::from_millis(300));
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-D", "-", "-o", "/dev/null"])
        .arg(&loc));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("HTTP/2 204"), "{text}");
    let have: u64 = header(&text, "range")
        .and_then(|r| r.trim_start_matches("0-").parse::<u64>().ok())
        .map(|e| e + 1)
        .expect("range");
    assert!(have > 0 && have <= TOTAL / 2, "resume point {have}");
    // Resume from where the core says it is, through the edge.
    let rest = tempfile::NamedTempFile::new().unwrap();
    let mut buf = vec![0u8; (TOTAL - have) as usize];
    berth_tests::image::Pattern::fill_at(have, &mut buf);
    std::fs::write(rest.path(), &buf).unwrap();
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--fail",
            "-X",
            "PATCH",
            "-H",
            &format!("Content-Range: {have}-{}", TOTAL - 1),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
        ])
        .arg(format!("@{}", rest.path().display()))
        .arg(&loc));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    let digest = berth_tests::image::Pattern::digest(TOTAL);
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--fail",
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{loc}?digest={digest}")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "201");
}

#[test]
fn without_certificates_the_edge_makes_a_development_ca_once() {
    let core = trusting_core();
    let upstream = core.connector("hosted").to_owned();
    let edge = Edge::start(1, |p| {
        format!("state_dir: ./state\nlisteners:\n  - listen: 127.0.0.1:{}\n    upstreams: [{upstream}]\n", p[0])
    });
    let certs = edge.dir.path().join("state/certs");
    let ca = certs.join("ca.crt");
    assert!(ca.exists() && certs.join("server.key").exists());
    assert!(
        edge.log().contains("docker-trust"),
        "no trust instructions:\n{}",
        edge.log()
    );
    assert!(
        edge.log().contains("days_left"),
        "expiry not logged:\n{}",
        edge.log()
    );
    let port = edge.ports[0];
    let out = run(curl(&ca, "localhost", "127.0.0.1", port)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://localhost:{port}/v2/")));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(certs.join("ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

/// A core serving direct HTTPS with `cert`/`key` on its only connector.
fn direct_https_core(pki: &Pki) -> (Core, u16) {
    let (cert, key) = pki.issue("direct", &["registry.test", "localhost"], &["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n  - name: hosted\n    kind: hosted\n    connector:\n      http: 127.0.0.1:0\n      https: {{ listen: 127.0.0.1:0, cert: {}, key: {} }}\n",
        dir.path().join("data").display(),
        cert.display(),
        key.display()
    );
    let core = Core::start_in(dir, &config);
    let addr = core
        .https_connectors
        .get("hosted")
        .expect("https connector");
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    (core, port)
}

/// Sends `bytes` and reads until the peer closes.
fn raw_exchange(addr: &str, bytes: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// Audit: plain HTTP sent to a TLS port got TLS alert bytes back, which clients report as
/// `malformed HTTP response "\x15\x03\x03..."`. Both TLS front ends now answer a readable 400.
#[test]
fn plain_http_to_a_tls_port_gets_a_readable_400() {
    let pki = Pki::new();
    let (core, https_port) = direct_https_core(&pki);
    let edge = edge_for(&core, &pki, "");
    let request = b"GET /v2/ HTTP/1.1\r\nHost: registry.test\r\nUser-Agent: plain\r\n\r\n";
    for addr in [
        format!("127.0.0.1:{}", edge.ports[0]),
        format!("127.0.0.1:{https_port}"),
    ] {
        let out = String::from_utf8_lossy(&raw_exchange(&addr, request)).into_owned();
        assert!(out.starts_with("HTTP/1.1 400 "), "{addr}: {out:?}");
        assert!(out.contains("Use https://"), "{addr}: {out:?}");
        // TLS clients on the same ports are served as before.
        let ok = run(curl(
            &pki.ca_cert(),
            "registry.test",
            "127.0.0.1",
            addr.rsplit(':').next().unwrap().parse().unwrap(),
        )
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!(
            "https://registry.test:{}/v2/",
            addr.rsplit(':').next().unwrap()
        )));
        assert_eq!(String::from_utf8_lossy(&ok.stdout), "200");
    }
}

/// Audit: with a direct-HTTPS connection open, SIGTERM skipped the drain (the shutdown handle
/// could not be reclaimed) and cut downloads in flight. Now an idle HTTPS keep-alive connection
/// and an HTTPS download in flight: the download completes and the core exits soon after.
#[test]
fn core_sigterm_drains_with_https_connections_open() {
    let pki = Pki::new();
    let (mut core, port) = direct_https_core(&pki);
    let digest = push_200_mib(core.connector("hosted"));
    let tls = berth_tests::tls::config(&pki.ca_cert());
    let mut idle = berth_tests::tls::Conn::open(
        &tls,
        &format!("127.0.0.1:{port}"),
        &format!("registry.test:{port}"),
    )
    .unwrap();
    assert_eq!(idle.request("GET", "/v2/", &[], b"").unwrap().0, 200);
    let download = slow_download(&pki, port, &digest);
    std::thread::sleep(Duration::from_millis(1000));
    core.signal("TERM");
    let out = download.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "in-flight HTTPS download was cut: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        core.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (200u64 << 20).to_string()
    );
    let status = core.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "core did not exit cleanly: {status:?}\n{}",
        core.log()
    );
    drop(idle);
}

/// Pushes a 200 MiB blob to `slow/` on a plain connector; returns its digest.
fn push_200_mib(connector: &str) -> String {
    let blob = vec![9u8; 200 << 20];
    let digest = berth_tests::http::digest(&blob);
    let r = berth_tests::http::request(
        connector,
        "POST",
        &format!("/v2/slow/blobs/uploads/?digest={digest}"),
        &[],
        &blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    digest
}

/// Downloads `slow/<digest>` over HTTPS at 50 MB/s (about 4 s); prints the size downloaded.
fn slow_download(pki: &Pki, port: u16, digest: &str) -> std::process::Child {
    curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["--fail", "--limit-rate", "50M", "-o", "/dev/null"])
        .args(["-w", "%{size_download}"])
        .arg(format!(
            "https://registry.test:{port}/v2/slow/blobs/{digest}"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}
