//! Metadata in a real PostgreSQL server (started by the test): real clients push and pull, and
//! two cores sharing one database and one blob root serve each other's content — an upload
//! started on one is finished on the other, as behind a load-balancing edge.

use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::image::write_layout;
use berth_tests::postgres::Postgres;
use berth_tests::tools::{podman, run, skopeo};

/// A core whose metadata is in `url`, with blobs under `blobs`; the password comes from a file
/// (the throwaway server trusts loopback, so any password passes, but the path is exercised).
fn core_on(url: &str, blobs: &std::path::Path) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("pg.pass");
    std::fs::write(&secret, "not-needed\n").unwrap();
    let config = format!(
        "storage:\n  root: {}\n  metadata:\n    postgres: {{ url: \"{url}\", password_file: {} }}\n\
         main: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        blobs.display(),
        secret.display()
    );
    Core::start_in(dir, &config)
}

#[test]
fn two_cores_on_one_postgres_serve_each_others_pushes_and_uploads() {
    let pg = Postgres::start();
    let blobs = tempfile::tempdir().unwrap();
    let a = core_on(&pg.url, blobs.path());
    let b = core_on(&pg.url, blobs.path());
    let (ra, rb) = (
        a.connector("hosted").to_owned(),
        b.connector("hosted").to_owned(),
    );
    let work = tempfile::tempdir().unwrap();
    let multi = write_layout(
        &work.path().join("multi"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[300_000, 40_000],
        61,
    );
    // skopeo pushes a multi-arch image to core A...
    run(skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", work.path().join("multi").display()))
        .arg(format!("docker://{ra}/team/multi:v1")));
    // ...and core B, sharing the database, serves it byte-identical.
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{rb}/team/multi:v1")));
    assert_eq!(http::digest(&raw.stdout), multi.top);
    let back = work.path().join("back");
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{rb}/team/multi:v1"))
        .arg(format!("dir:{}", back.display())));
    for layer in &multi.layers {
        let hex = layer.trim_start_matches("sha256:");
        assert!(back.join(hex).exists(), "layer {layer} pulled from B");
    }
    // podman pulls through B too.
    let root = work.path().join("podman");
    run(podman(&root)
        .args(["pull", "--tls-verify=false"])
        .arg(format!("{rb}/team/multi:v1")));
    let tags = request(&rb, "GET", "/v2/team/multi/tags/list", &[], b"").unwrap();
    assert_eq!(tags.json()["tags"], serde_json::json!(["v1"]));

    // An upload started on A, continued and finished on B.
    let r = request(&ra, "POST", "/v2/team/blob/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(r.status, 202);
    let loc = r.header("location").unwrap().to_owned();
    let path = format!("/v2/{}", loc.split_once("/v2/").unwrap().1);
    let r = request(&ra, "PATCH", &path, &[("Content-Range", "0-5")], b"first ").unwrap();
    assert_eq!(r.status, 202);
    let r = request(&rb, "GET", &path, &[], b"").unwrap();
    assert_eq!(
        (r.status, r.header("range")),
        (204, Some("0-5")),
        "B sees A's session"
    );
    let r = request(&rb, "PATCH", &path, &[("Content-Range", "6-11")], b"second").unwrap();
    assert_eq!(r.status, 202);
    let d = http::digest(b"first second");
    let r = request(&rb, "PUT", &format!("{path}?digest={d}"), &[], b"").unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = request(&ra, "GET", &format!("/v2/team/blob/blobs/{d}"), &[], b"").unwrap();
    assert_eq!(r.body, b"first second", "A serves what B committed");
}

#[test]
fn a_password_in_the_url_is_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage:\n  root: {}\n  metadata:\n    postgres: {{ url: \"postgres://berth:secret@127.0.0.1:1/berth\" }}\n\
         main: {{ listen: 127.0.0.1:0 }}\n",
        dir.path().join("data").display()
    );
    let path = dir.path().join("core.yaml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(berth_tests::bin("berth-core"))
        .args(["check-config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage.metadata.postgres.url") && err.contains("password_file"),
        "{err}"
    );
    assert!(
        !err.contains("secret"),
        "the password is never printed: {err}"
    );
}

/// Settings changed on one core reach every core on the database: a repository created on A
/// is served by B within a few seconds (B polls the settings version), and deleted again.
#[test]
fn a_repository_created_on_one_core_is_served_by_the_other() {
    let pg = Postgres::start();
    let blobs = tempfile::tempdir().unwrap();
    let a = core_on(&pg.url, blobs.path());
    let b = core_on(&pg.url, blobs.path());
    let body = br#"{"name":"shared","kind":"hosted"}"#;
    let r = request(
        &a.main,
        "POST",
        "/api/v1/repositories",
        &[("Content-Type", "application/json")],
        body,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let config = b"{}";
    assert_eq!(
        berth_tests::registry::push_blob(&a.main, "shared/app", config)
            .unwrap()
            .status,
        201
    );
    let path = format!("/v2/shared/app/blobs/{}", http::digest(config));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let r = request(&b.main, "GET", &path, &[], b"").unwrap();
        if r.status == 200 {
            assert_eq!(r.body, config);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "B never served it: {}",
            r.status
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let r = request(&b.main, "GET", "/api/v1/repositories/shared", &[], b"").unwrap();
    assert_eq!(r.json()["origin"]["source"], "api");
    let r = request(&a.main, "DELETE", "/api/v1/repositories/shared", &[], b"").unwrap();
    assert_eq!(r.status, 204);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while request(&b.main, "GET", &path, &[], b"").unwrap().status != 404 {
        assert!(std::time::Instant::now() < deadline, "B still serves it");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}
