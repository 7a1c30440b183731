//! Proxy and group repositories against real remotes: a second berth-core and CNCF
//! Distribution (with basic auth), through a relay that counts, slows and cuts remote traffic.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use berth_tests::bench::Distribution;
use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::image::{write_layout, Pattern};
use berth_tests::prometheus::{sample, scrape};
use berth_tests::relay::Relay;
use berth_tests::tools::{run, skopeo, Dockerd};

/// A core with a group (hosted first, then a proxy of `remote_url`), each on its own port.
fn local_core(remote_url: &str, extra_proxy: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nmetrics: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: group, kind: group, members: [hosted, hub], writable_member: hosted, v1_enabled: true, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - name: hub\n    kind: proxy\n    connector: {{ http: 127.0.0.1:0 }}\n    remote: {{ url: {remote_url} }}\n\
         \x20   metadata_max_age: 1s\n    negative_cache_ttl: 1s\n{extra_proxy}",
        data.display()
    );
    Core::start_in(dir, &config)
}

fn push_layout(dir: &std::path::Path, tag: &str, dest: &str, all: bool) {
    let mut c = skopeo();
    c.arg("copy").arg("--dest-tls-verify=false");
    if all {
        c.arg("--all");
    }
    run(c
        .arg(format!("oci:{}:{tag}", dir.display()))
        .arg(format!("docker://{dest}")));
}

fn raw_digest(reference: &str) -> String {
    let out = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}")));
    http::digest(&out.stdout)
}

#[test]
fn pull_through_with_skopeo_and_docker_then_the_remote_goes_away() {
    let mut remote = Core::start();
    let r = remote.connector("hosted").to_owned();
    let work = tempfile::tempdir().unwrap();
    let single = write_layout(
        &work.path().join("single"),
        "v1",
        &[("linux", "amd64")],
        &[300_000, 40_000],
        41,
    );
    let multi = write_layout(
        &work.path().join("multi"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[200_000],
        42,
    );
    push_layout(
        &work.path().join("single"),
        "v1",
        &format!("{r}/lib/single:v1"),
        false,
    );
    push_layout(
        &work.path().join("multi"),
        "v1",
        &format!("{r}/lib/multi:v1"),
        true,
    );

    let local = local_core(&format!("http://{r}"), "");
    let hub = local.connector("hub").to_owned();
    assert_eq!(
        raw_digest(&format!("{hub}/lib/multi:v1")),
        multi.top,
        "index digest kept"
    );
    let back = work.path().join("back");
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{hub}/lib/multi:v1"))
        .arg(format!("oci:{}:v1", back.display())));
    for d in multi.manifests.iter().chain(&multi.layers) {
        let orig = std::fs::read(work.path().join("multi/blobs/sha256").join(&d[7..])).unwrap();
        assert!(
            std::fs::read(back.join("blobs/sha256").join(&d[7..])).unwrap_or_default() == orig,
            "{d} differs"
        );
    }
    let dockerd = Dockerd::start();
    let image = format!("{hub}/lib/single:v1");
    run(dockerd.docker().args(["pull", &image]));
    let out = run(dockerd.docker().args([
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &image,
    ]));
    assert!(String::from_utf8_lossy(&out.stdout)
        .trim()
        .ends_with(&single.top));
    // Every blob came from the remote once; the remote's latency was measured.
    let cold = scrape(local.metrics.as_deref().unwrap());
    let cache = |text: &str, kind: &str, result: &str| {
        let series = format!(
            "berth_proxy_cache_requests_total{{repository=\"hub\",kind=\"{kind}\",result=\"{result}\"}}"
        );
        sample(text, &series)
    };
    let layers = (multi.layers.len() + single.layers.len()) as f64;
    assert!(cache(&cold, "blob", "miss") >= layers, "{cold}");
    assert!(cache(&cold, "manifest", "miss") >= 2.0, "{cold}");
    assert!(
        sample(
            &cold,
            "berth_proxy_remote_request_duration_seconds_count{repository=\"hub\"}"
        ) >= layers,
        "{cold}"
    );

    // The remote goes away; tags are stale (metadata_max_age 1s), yet everything still pulls.
    remote.kill9();
    std::thread::sleep(Duration::from_millis(1200));
    let again = work.path().join("again");
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{hub}/lib/multi:v1"))
        .arg(format!("oci:{}:v1", again.display())));
    run(dockerd.docker().args(["rmi", &image]));
    run(dockerd.docker().args(["pull", &image]));
    // Served from the cache: stale tags while the remote is down, blobs as hits.
    let warm = scrape(local.metrics.as_deref().unwrap());
    assert!(cache(&warm, "manifest", "stale") >= 2.0, "{warm}");
    assert!(cache(&warm, "blob", "hit") >= layers, "{warm}");
    assert_eq!(cache(&warm, "blob", "miss"), cache(&cold, "blob", "miss"));
    // A miss names the remote.
    let miss = request(&hub, "GET", "/v2/lib/never-pulled/manifests/v1", &[], b"").unwrap();
    assert_eq!(miss.status, 502);
    assert!(
        String::from_utf8_lossy(&miss.body).contains(&r),
        "{}",
        String::from_utf8_lossy(&miss.body)
    );
    // The admin API shows the remote's trouble.
    let admin = request(&local.main, "GET", "/api/v1/repositories", &[], b"").unwrap();
    let hub_status = admin
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "hub")
        .unwrap()["status"]
        .clone();
    assert!(
        hub_status["consecutive_failures"].as_u64().unwrap_or(0) >= 1,
        "{hub_status}"
    );
    // Pushes to a proxy are refused.
    let push = request(&hub, "POST", "/v2/lib/single/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(push.status, 403);
    assert_eq!(push.code(), "DENIED");
}

/// Pulls a blob with curl; returns (sha256 of the body, time to first byte, total time).
fn pull_blob(url: &str) -> (String, f64, f64) {
    let mut child = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "120",
            "-w",
            "%{stderr}%{time_starttransfer} %{time_total}",
        ])
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut body = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut body).unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    child.wait().unwrap();
    let times: Vec<f64> = err
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    (
        http::digest(&body),
        times.first().copied().unwrap_or(f64::MAX),
        times.get(1).copied().unwrap_or(0.0),
    )
}

fn push_pattern_blob(addr: &str, image: &str, size: u64, seed_offset: u64) -> String {
    let mut blob = vec![0u8; size as usize];
    Pattern::fill_at(seed_offset, &mut blob);
    let d = http::digest(&blob);
    let r = request(
        addr,
        "POST",
        &format!("/v2/{image}/blobs/uploads/?digest={d}"),
        &[],
        &blob,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    d
}

#[test]
fn twenty_concurrent_pulls_cause_one_remote_fetch_and_stream_early() {
    let remote = Core::start();
    let digest = push_pattern_blob(remote.connector("hosted"), "big/app", 200 << 20, 0);
    let relay = Relay::start(remote.connector("hosted"));
    relay.rate.store(100 << 20, Ordering::SeqCst); // ~2 s for the whole layer
    let local = local_core(&format!("http://{}", relay.addr), "");
    let url = format!(
        "http://{}/v2/big/app/blobs/{digest}",
        local.connector("hub")
    );
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || pull_blob(&url))
        })
        .collect();
    let results: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    for (i, (d, first, total)) in results.iter().enumerate() {
        assert_eq!(d, &digest, "client {i} got wrong bytes");
        assert!(
            total - first > 0.5,
            "client {i}: first byte at {first:.2}s of {total:.2}s — it waited for the whole layer"
        );
    }
    assert_eq!(
        relay.count("GET", &format!("/blobs/{digest}")),
        1,
        "remote requests: {:?}",
        relay.requests.lock().unwrap()
    );
    // Now cached: no more remote traffic for it.
    let (d, _, _) = pull_blob(&url);
    assert_eq!(d, digest);
    assert_eq!(relay.count("GET", &format!("/blobs/{digest}")), 1);
}

#[test]
fn a_truncated_remote_transfer_caches_nothing() {
    let remote = Core::start();
    let digest = push_pattern_blob(remote.connector("hosted"), "cut/app", 20 << 20, 5 << 20);
    let relay = Relay::start(remote.connector("hosted"));
    relay.cut_after.store(5 << 20, Ordering::SeqCst);
    let local = local_core(&format!("http://{}", relay.addr), "");
    let url = format!(
        "http://{}/v2/cut/app/blobs/{digest}",
        local.connector("hub")
    );
    let (d, _, _) = pull_blob(&url);
    assert_ne!(
        d, digest,
        "a cut transfer cannot have produced the right bytes"
    );
    std::thread::sleep(Duration::from_millis(300));
    let cached = local
        .dir
        .path()
        .join("data/blobs/sha256")
        .join(&digest[7..9])
        .join(&digest[7..]);
    assert!(!cached.exists(), "a truncated blob was cached");
    // Once the remote behaves, the blob comes through whole.
    relay.cut_after.store(u64::MAX, Ordering::SeqCst);
    let (d, _, _) = pull_blob(&url);
    assert_eq!(d, digest);
    std::thread::sleep(Duration::from_millis(300));
    assert!(cached.exists(), "the verified blob was not cached");
}

#[test]
fn groups_read_in_member_order_take_pushes_and_answer_v1_search() {
    let remote = Core::start();
    let r = remote.connector("hosted").to_owned();
    let work = tempfile::tempdir().unwrap();
    let remote_app = work.path().join("remote-app");
    write_layout(&remote_app, "v1", &[("linux", "amd64")], &[50_000], 51);
    push_layout(&remote_app, "v1", &format!("{r}/team/app:v1"), false);
    let only = work.path().join("only");
    let only_img = write_layout(&only, "v1", &[("linux", "amd64")], &[60_000], 52);
    push_layout(&only, "v1", &format!("{r}/team/remote-only:v1"), false);

    let local = local_core(&format!("http://{r}"), "");
    let (hosted, group) = (
        local.connector("hosted").to_owned(),
        local.connector("group").to_owned(),
    );
    let local_app = work.path().join("local-app");
    let local_img = write_layout(&local_app, "v1", &[("linux", "amd64")], &[50_000], 53);
    push_layout(&local_app, "v1", &format!("{hosted}/team/app:v1"), false);

    // Member order: hosted answers before the proxy.
    assert_eq!(raw_digest(&format!("{group}/team/app:v1")), local_img.top);
    assert_eq!(
        raw_digest(&format!("{group}/team/remote-only:v1")),
        only_img.top
    );

    // A push through the group lands in the writable member.
    let pushed = work.path().join("pushed");
    let pushed_img = write_layout(&pushed, "v1", &[("linux", "amd64")], &[70_000], 54);
    push_layout(&pushed, "v1", &format!("{group}/team/pushed:v1"), false);
    assert_eq!(
        raw_digest(&format!("{hosted}/team/pushed:v1")),
        pushed_img.top
    );

    // A manifest pushed through the group may reference blobs only the proxy member has.
    let manifest = std::fs::read(only.join("blobs/sha256").join(&only_img.top[7..])).unwrap();
    let put = request(
        &group,
        "PUT",
        "/v2/team/remote-only/manifests/mine",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &manifest,
    )
    .unwrap();
    assert_eq!(put.status, 201, "{}", String::from_utf8_lossy(&put.body));
    for layer in &only_img.layers {
        let h = request(
            &hosted,
            "HEAD",
            &format!("/v2/team/remote-only/blobs/{layer}"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(
            h.status, 200,
            "blob {layer} was not copied into the writable member"
        );
    }

    // Tags are merged.
    let tags = request(&group, "GET", "/v2/team/remote-only/tags/list", &[], b"").unwrap();
    assert_eq!(tags.json()["tags"], serde_json::json!(["mine", "v1"]));

    // V1 search over the group's members; V1 off elsewhere says so.
    let found = request(&group, "GET", "/v1/search?q=team&n=25", &[], b"").unwrap();
    assert_eq!(found.status, 200);
    let names: Vec<String> = found.json()["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    for want in ["team/app", "team/pushed", "team/remote-only"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let off = request(&hosted, "GET", "/v1/search?q=team", &[], b"").unwrap();
    assert_eq!(off.status, 404);
    assert!(String::from_utf8_lossy(&off.body).contains("v1_enabled"));
    let dockerd = Dockerd::start();
    let out = run(dockerd.docker().args(["search", &format!("{group}/team")]));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("team/pushed") && text.contains("team/app"),
        "{text}"
    );
    let off = dockerd
        .docker()
        .args(["search", &format!("{hosted}/team")])
        .output()
        .unwrap();
    assert!(!off.status.success(), "docker search worked with V1 off");
}

#[test]
fn distribution_as_a_remote_with_basic_auth() {
    let work = tempfile::tempdir().unwrap();
    let out = run(Command::new("htpasswd").args(["-Bbn", "puller", "s3cret"]));
    let htpasswd = work.path().join("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    let dist = Distribution::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        htpasswd.display()
    ));
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[120_000],
        61,
    );
    run(skopeo()
        .args([
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            "puller:s3cret",
        ])
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{}/dist/app:v1", dist.addr)));

    let pass = work.path().join("pass");
    std::fs::write(&pass, "s3cret\n").unwrap();
    let local = local_core(&format!("http://{}", dist.addr), "");
    // Without credentials the remote refuses: the error names it.
    let denied = request(
        local.connector("hub"),
        "GET",
        "/v2/dist/app/manifests/v1",
        &[],
        b"",
    )
    .unwrap();
    assert!(
        denied.status >= 400,
        "anonymous pull from an authenticated remote succeeded"
    );
    drop(local);

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n  - name: dist\n    kind: proxy\n    connector: {{ http: 127.0.0.1:0 }}\n    remote: {{ url: http://{}, username: puller, password_file: {} }}\n",
        dir.path().join("data").display(),
        dist.addr,
        pass.display()
    );
    let authed = Core::start_in(dir, &config);
    let hub = authed.connector("dist").to_owned();
    assert_eq!(raw_digest(&format!("{hub}/dist/app:v1")), img.top);
    let back = work.path().join("back");
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{hub}/dist/app:v1"))
        .arg(format!("oci:{}:v1", back.display())));
    for d in &img.layers {
        assert!(
            back.join("blobs/sha256").join(&d[7..]).exists(),
            "{d} not pulled through"
        );
    }
}

/// A remote that accepts connections and never answers (audit: one such remote wedged every
/// uncached blob of the repository, and auto-block never tripped). Stops when dropped.
struct SilentRemote {
    addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SilentRemote {
    fn start() -> SilentRemote {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => held.push(s),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentRemote {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentRemote {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn a_remote_that_accepts_and_stays_silent_times_out_and_is_blocked() {
    let silent = SilentRemote::start();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - name: hub\n    kind: proxy\n    connector: {{ http: 127.0.0.1:0 }}\n\
         \x20   remote: {{ url: \"http://{}\", connect_timeout: 1s, response_timeout: 1s, idle_timeout: 1s }}\n\
         \x20   auto_block_after: 3\n    auto_block_for: 1m\n",
        dir.path().join("data").display(),
        silent.addr
    );
    let core = Core::start_in(dir, &config);
    let hub = core.connector("hub").to_owned();
    // Five uncached blobs at once: each is answered (502 naming the remote) within the bound,
    // none waits behind another.
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..5u8)
        .map(|i| {
            let hub = hub.clone();
            std::thread::spawn(move || {
                let d = http::digest(&[i; 8]);
                let r = request(&hub, "GET", &format!("/v2/app/blobs/{d}"), &[], b"").unwrap();
                (r.status, String::from_utf8_lossy(&r.body).into_owned())
            })
        })
        .collect();
    for c in clients {
        let (status, body) = c.join().unwrap();
        assert_eq!(status, 502, "{body}");
        assert!(
            body.contains(&silent.addr),
            "the error names the remote: {body}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "silent remote held clients for {:?}",
        started.elapsed()
    );
    // Those failures tripped auto-block: the remote is left alone and misses fail at once.
    let r = request(&core.main, "GET", "/api/v1/repositories", &[], b"").unwrap();
    let status = &r.json()[0]["status"];
    assert!(
        status["consecutive_failures"].as_u64().unwrap() >= 3,
        "{status}"
    );
    assert!(
        status["blocked_for_seconds"].as_u64().unwrap() > 0,
        "{status}"
    );
    assert_eq!(status["state"], "blocked");
    assert!(status["last_error"].as_str().is_some(), "{status}");
    let quick = std::time::Instant::now();
    let r = request(&hub, "GET", "/v2/app/manifests/latest", &[], b"").unwrap();
    assert_eq!(r.status, 502);
    assert!(String::from_utf8_lossy(&r.body).contains("blocked"));
    assert!(
        quick.elapsed() < Duration::from_millis(500),
        "{:?}",
        quick.elapsed()
    );
}

/// Audit: a proxy never recorded the referrers of what it cached, so its offline fallback was
/// always empty. Cached through the hosted store, they are recorded like any push.
#[test]
fn referrers_of_cached_manifests_are_served_while_the_remote_is_down() {
    let mut remote = Core::start();
    let r = remote.connector("hosted").to_owned();
    let subject = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;
    let put = |reference: &str, body: &[u8]| {
        let resp = request(
            &r,
            "PUT",
            &format!("/v2/app/manifests/{reference}"),
            &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
            body,
        )
        .unwrap();
        assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    };
    put("v1", subject);
    let subject_digest = http::digest(subject);
    let signature = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","artifactType":"application/vnd.example.sig","manifests":[],"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{subject_digest}","size":{}}}}}"#,
        subject.len()
    );
    let sig_digest = http::digest(signature.as_bytes());
    put(&sig_digest, signature.as_bytes());
    let local = local_core(&format!("http://{r}"), "");
    let hub = local.connector("hub").to_owned();
    // Pull both through the proxy.
    for reference in [subject_digest.as_str(), sig_digest.as_str()] {
        let resp = request(
            &hub,
            "GET",
            &format!("/v2/app/manifests/{reference}"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(resp.status, 200);
    }
    remote.kill9();
    let resp = request(
        &hub,
        "GET",
        &format!("/v2/app/referrers/{subject_digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    let listed = resp.json()["manifests"].clone();
    assert_eq!(listed[0]["digest"], sig_digest.as_str(), "{listed}");
    assert_eq!(listed[0]["artifactType"], "application/vnd.example.sig");
}
