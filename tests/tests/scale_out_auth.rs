//! Three cores on one PostgreSQL and one bucket, with access control on, are one registry:
//! a token one core issues is good on the others, docker, podman and skopeo log in, push and
//! pull through one edge that spreads their requests over all three, run-time changes and
//! revocations reach every core within the settings poll, a key rotation logs nobody out, a
//! core with another key refuses to start, and three schedules make one collection per
//! interval.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use berth_tests::core::{hash_password, Core};
use berth_tests::edge::{front_edge, wait_for};
use berth_tests::http::{digest, request, Response};
use berth_tests::image::write_layout;
use berth_tests::postgres::Postgres;
use berth_tests::s3::S3Server;
use berth_tests::tools::{podman, run, skopeo, with_stdin, Dockerd};
use serde_json::{json, Value};

/// The longest a change made on one core may take to apply on another: the settings poll
/// (1 s) and a margin for a loaded machine.
const FOLLOW: Duration = Duration::from_secs(5);

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// A core's config on the shared stores: root administers, alice reads, writes and deletes;
/// `extra` goes in the `auth` section.
fn config(
    dir: &std::path::Path,
    pg: &Postgres,
    s3: &S3Server,
    hashes: &(String, String),
) -> String {
    config_with(dir, pg, s3, hashes, "")
}

fn config_with(
    dir: &std::path::Path,
    pg: &Postgres,
    s3: &S3Server,
    hashes: &(String, String),
    extra_auth: &str,
) -> String {
    format!(
        "storage:\n  root: {}\n  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n\
         main: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         auth:\n{extra_auth}  users:\n\
         \x20   - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20   - {{ name: alice, password_hash: \"{}\", roles: [developers] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: developers, privileges: [{{ repositories: \"*\", actions: [read, write, delete] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.join("data").display(),
        pg.url,
        s3.config("registry"),
        hashes.0,
        hashes.1,
    )
}

fn cores(pg: &Postgres, s3: &S3Server, hashes: &(String, String)) -> Vec<Core> {
    (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let text = config(dir.path(), pg, s3, hashes);
            Core::start_in(dir, &text)
        })
        .collect()
}

/// A registry token from `addr`'s realm for alice.
fn token(addr: &str, scope: &str) -> String {
    let path = format!("/v2/token?service=berth&scope={scope}");
    let auth = basic("alice", "alice-pw");
    let r = request(addr, "GET", &path, &[("Authorization", &auth)], b"").unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_owned()
}

fn get(addr: &str, path: &str, auth: &str) -> Response {
    request(addr, "GET", path, &[("Authorization", auth)], b"").unwrap()
}

fn admin(core: &Core, method: &str, path: &str, body: Value) -> Response {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let auth = basic("root", "root-pw");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(
        &core.main,
        method,
        &format!("/berth{path}"),
        &headers,
        &body,
    )
    .unwrap()
}

/// Polls `check` until it holds or `FOLLOW` passed; how long it took.
fn within_follow(what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < FOLLOW, "{what}: not within {FOLLOW:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    started.elapsed()
}

#[test]
fn three_cores_with_access_control_behind_one_edge_are_one_registry() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let hashes = (hash_password("root-pw"), hash_password("alice-pw"));
    let cores = cores(&pg, &s3, &hashes);
    let conn: Vec<String> = cores
        .iter()
        .map(|c| c.connector("hosted").to_owned())
        .collect();

    // A token from core 1 is good on cores 2 and 3.
    let t = token(&conn[0], "repository:team/app:pull,push");
    for c in &conn {
        let r = get(c, "/v2/", &format!("Bearer {t}"));
        assert_eq!(r.status, 200, "core {c} refused core 1's token");
    }
    let keys: Vec<Value> = cores
        .iter()
        .map(|c| admin(c, "GET", "/api/v1/signing-key", Value::Null).json())
        .collect();
    assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    assert_eq!(keys[0]["source"], "metadata store");

    let pki = tempfile::tempdir().unwrap();
    let (edge, trust) = front_edge(
        &conn.iter().map(String::as_str).collect::<Vec<_>>(),
        pki.path(),
    );
    let reg = format!("localhost:{}", edge.ports[0]);
    clients_through_the_edge(&reg, &trust, edge.ports[0]);

    // Every core lists the same catalog, tags and referrers.
    let root = basic("root", "root-pw");
    let views = |path: &str| -> Vec<Vec<u8>> {
        conn.iter()
            .map(|c| {
                let r = get(c, path, &root);
                assert_eq!(r.status, 200, "{c}{path}");
                r.body
            })
            .collect()
    };
    for path in [
        "/v2/_catalog",
        "/v2/team/app/tags/list",
        "/v2/team/docker/tags/list",
    ] {
        let v = views(path);
        assert!(v.iter().all(|b| *b == v[0]), "{path} differs between cores");
    }
    let catalog: Value = serde_json::from_slice(&views("/v2/_catalog")[0]).unwrap();
    for image in ["team/app", "team/podman", "team/docker"] {
        assert!(
            catalog["repositories"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r == image),
            "{catalog}"
        );
    }
    let index = get(&conn[0], "/v2/team/app/manifests/v1", &root);
    let referrers = format!("/v2/team/app/referrers/{}", digest(&index.body));
    let v = views(&referrers);
    assert!(v.iter().all(|b| *b == v[0]), "referrers differ");

    run_time_changes_reach_every_core(&cores, &conn);
    rotation_logs_nobody_out(&cores, &conn, &t);
}

/// skopeo (multi-arch), podman and docker log in, push and pull through the edge.
fn clients_through_the_edge(reg: &str, trust: &std::path::Path, port: u16) {
    let work = tempfile::tempdir().unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[300_000, 4_000_000],
        23,
    );
    run(skopeo()
        .args(["copy", "--all", "--dest-cert-dir"])
        .arg(trust)
        .args(["--dest-creds", "alice:alice-pw"])
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{reg}/team/app:v1")));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(trust)
        .args(["--creds", "alice:alice-pw"])
        .arg(format!("docker://{reg}/team/app:v1")));
    assert_eq!(digest(&raw.stdout), img.top);
    run(skopeo()
        .args(["copy", "--all", "--src-cert-dir"])
        .arg(trust)
        .args(["--src-creds", "alice:alice-pw"])
        .arg(format!("docker://{reg}/team/app:v1"))
        .arg(format!("oci:{}:back", work.path().join("back").display())));

    // podman: login, pull, tag, push.
    let root = work.path().join("podman");
    let login = with_stdin(
        podman(&root)
            .args(["login", "--cert-dir"])
            .arg(trust)
            .args(["-u", "alice", "--password-stdin", reg]),
        "alice-pw\n",
    );
    assert!(login.status.success(), "podman login: {login:?}");
    let app = format!("{reg}/team/app:v1");
    run(podman(&root)
        .args(["pull", "--arch", "amd64", "--cert-dir"])
        .arg(trust)
        .arg(&app));
    let pushed = format!("{reg}/team/podman:v1");
    run(podman(&root).args(["tag", &app, &pushed]));
    run(podman(&root)
        .args(["push", "--cert-dir"])
        .arg(trust)
        .arg(&pushed));

    // docker, on the loopback address (docker does not check certificates there).
    let dockerd = Dockerd::start();
    let host = format!("127.0.0.1:{port}");
    let out = with_stdin(
        dockerd
            .docker()
            .args(["login", "-u", "alice", "--password-stdin", &host]),
        "alice-pw\n",
    );
    assert!(
        out.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let remote = format!("{host}/team/app:v1");
    run(dockerd.docker().args(["pull", &remote]));
    let pushed = format!("{host}/team/docker:v1");
    run(dockerd.docker().args(["tag", &remote, &pushed]));
    run(dockerd.docker().args(["push", &pushed]));
    run(dockerd.docker().args(["rmi", &pushed, &remote]));
    run(dockerd.docker().args(["pull", &pushed]));
}

/// A repository created on core 1 answers on cores 2 and 3; an API token revoked on core 1
/// stops working on all three.
fn run_time_changes_reach_every_core(cores: &[Core], conn: &[String]) {
    let r = admin(
        &cores[0],
        "POST",
        "/api/v1/repositories",
        json!({ "name": "live", "kind": "hosted" }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    for c in &cores[1..] {
        within_follow("a repository created on core 1", || {
            admin(c, "GET", "/api/v1/repositories/live", Value::Null).status == 200
        });
    }

    let r = admin(
        &cores[0],
        "POST",
        "/api/v1/users/alice/tokens",
        json!({ "name": "ci", "privileges": [{ "repositories": "hosted", "actions": ["read"] }] }),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let (id, secret) = (
        r.json()["id"].as_str().unwrap().to_owned(),
        r.json()["token"].as_str().unwrap().to_owned(),
    );
    let with_token = basic("alice", &secret);
    for c in conn {
        within_follow("a new API token", || {
            get(c, "/v2/team/app/tags/list", &with_token).status == 200
        });
    }
    let r = admin(
        &cores[0],
        "DELETE",
        &format!("/api/v1/users/alice/tokens/{id}"),
        Value::Null,
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(get(&conn[0], "/v2/", &with_token).status, 401);
    for c in conn {
        let took = within_follow("a revoked API token", || {
            get(c, "/v2/team/app/tags/list", &with_token).status == 401
        });
        eprintln!("revocation reached {c} in {took:?}");
    }
}

/// `berth-core rotate-key` while the cores run: tokens signed before stay good everywhere,
/// every core follows, and a token from the new key is good everywhere too.
fn rotation_logs_nobody_out(cores: &[Core], conn: &[String], before: &str) {
    let out = Command::new(berth_tests::bin("berth-core"))
        .args(["rotate-key", "--config"])
        .arg(cores[0].config_path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("now signed with key"), "{said}");
    let kid = |c: &Core| {
        let r = admin(c, "GET", "/api/v1/signing-key", Value::Null);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["kid"].as_str().unwrap().to_owned()
    };
    let new = said
        .split("now signed with key ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    for c in cores {
        within_follow("the rotated key", || kid(c) == new);
    }
    let after = token(&conn[2], "repository:team/app:pull");
    assert_ne!(after, before);
    for c in conn {
        for t in [before, after.as_str()] {
            let r = get(c, "/v2/team/app/tags/list", &format!("Bearer {t}"));
            assert_eq!(r.status, 200, "{c} refused a token after the rotation");
        }
    }
}

/// A core whose `auth.token_key_file` holds another key than the one the cores on its store
/// sign with refuses to start, and says what to do.
#[test]
fn a_core_with_another_key_refuses_to_start() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let hashes = (hash_password("root-pw"), hash_password("alice-pw"));
    let dir = tempfile::tempdir().unwrap();
    let first = config(dir.path(), &pg, &s3, &hashes);
    let running = Core::start_in(dir, &first);

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    std::fs::write(&key, [0x5a; 48]).unwrap();
    let extra = format!("  token_key_file: {}\n", key.display());
    let text = config_with(dir.path(), &pg, &s3, &hashes, &extra);
    std::fs::write(dir.path().join("core.yaml"), text).unwrap();
    let mut child = Command::new(berth_tests::bin("berth-core"))
        .args(["serve", "--config"])
        .arg(dir.path().join("core.yaml"))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let exited = wait_for(|| child.try_wait().unwrap());
    if exited.is_none() {
        let _ = child.kill();
    }
    let status = exited.expect("the core with another key started and served");
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        err.contains("auth.token_key_file") && err.contains("rotate-key"),
        "{err}"
    );
    // The running core is unaffected.
    let t = token(running.connector("hosted"), "repository:x:pull");
    assert!(!t.is_empty());
}

/// Three cores on a 2 s schedule: one collection per interval between them, not three, and
/// every core reports the same runs.
#[test]
fn three_schedules_make_one_collection_per_interval() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let cores: Vec<Core> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let text = format!(
                "storage:\n  root: {}\n  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n\
                 main: {{ listen: 127.0.0.1:0 }}\ngc: {{ interval: 2s, grace: 1s }}\n",
                dir.path().join("data").display(),
                pg.url,
                s3.config("registry")
            );
            Core::start_in(dir, &text)
        })
        .collect();
    let scheduled = |core: &Core| -> Vec<(i64, String)> {
        let r = request(&core.main, "GET", "/api/v1/gc", &[], b"").unwrap();
        assert_eq!(r.status, 200);
        let mut runs: Vec<(i64, String)> = r.json()["reports"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["scheduled"] == true)
            .map(|g| {
                (
                    g["started_at"].as_i64().unwrap(),
                    g["core"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        runs.sort();
        runs
    };
    let runs = wait_for(|| {
        let runs = scheduled(&cores[0]);
        (runs.len() >= 4).then_some(runs)
    })
    .expect("four scheduled collections within 30 s");
    // Runs start at least an interval apart (whole seconds): three independent schedules
    // would start within the same second or the next.
    for pair in runs.windows(2) {
        assert!(pair[1].0 - pair[0].0 >= 2, "two runs within 2 s: {runs:?}");
    }
    let on_all = runs[..4].to_vec();
    for c in &cores[1..] {
        assert_eq!(scheduled(c)[..4], on_all[..], "cores report different runs");
    }
}
