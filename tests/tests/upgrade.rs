//! Upgrading loses nothing: a data directory written by the release that kept metadata as
//! files (`tests/fixtures/fs-metadata-v0`, made with that release) is imported on first start
//! of this one — or by `berth-core migrate` — and everything pushed before pulls byte-identical
//! after, including an upload session that was left open.

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::tools::{run, skopeo};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fs-metadata-v0")
}

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A copy of the old data directory and a config over it.
fn old_data_dir() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    run(Command::new("cp")
        .arg("-r")
        .arg(fixture().join("data"))
        .arg(&data));
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: other, kind: hosted }}\n",
        data.display()
    );
    (dir, config)
}

fn check_everything_survived(core: &Core) {
    let want = expected();
    let hosted = core.connector("hosted");
    for (tag, key) in [("v1", "app_v1"), ("latest", "app_v1")] {
        let r = request(
            hosted,
            "GET",
            &format!("/v2/team/app/manifests/{tag}"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{tag}: {}", String::from_utf8_lossy(&r.body));
        assert_eq!(http::digest(&r.body), want[key].as_str().unwrap(), "{tag}");
    }
    let tags = request(hosted, "GET", "/v2/team/app/tags/list", &[], b"").unwrap();
    assert_eq!(tags.json()["tags"], serde_json::json!(["latest", "v1"]));
    // The multi-arch index and every blob under it, verified by skopeo as it copies.
    let out = tempfile::tempdir().unwrap();
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{hosted}/team/multi:multi"))
        .arg(format!("dir:{}", out.path().display())));
    let index = std::fs::read(out.path().join("manifest.json")).unwrap();
    assert_eq!(http::digest(&index), want["multi"].as_str().unwrap());
    // Referrers were derived from the old manifests.
    let app = want["app_v1"].as_str().unwrap();
    let r = request(
        hosted,
        "GET",
        &format!("/v2/team/app/referrers/{app}"),
        &[],
        b"",
    )
    .unwrap();
    let refs = r.json()["manifests"].clone();
    assert_eq!(refs[0]["digest"], want["sig"], "{refs}");
    assert_eq!(refs[0]["artifactType"], "application/vnd.example.sig");
    let catalog = request(&core.main, "GET", "/v2/_catalog", &[], b"").unwrap();
    let names = catalog.json()["repositories"].clone();
    assert!(
        names
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "hosted/team/multi"),
        "{names}"
    );
}

fn finish_the_open_session(core: &Core) {
    let hosted = core.connector("hosted");
    let session = expected()["session"].as_str().unwrap().to_owned();
    let r = request(hosted, "GET", &session, &[], b"").unwrap();
    assert_eq!(
        (r.status, r.header("range")),
        (204, Some("0-4")),
        "the session survived"
    );
    let r = request(
        hosted,
        "PATCH",
        &session,
        &[("Content-Range", "5-10")],
        b" world",
    )
    .unwrap();
    assert_eq!(r.status, 202);
    let d = http::digest(b"hello world");
    let r = request(hosted, "PUT", &format!("{session}?digest={d}"), &[], b"").unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = request(hosted, "GET", &format!("/v2/team/app/blobs/{d}"), &[], b"").unwrap();
    assert_eq!(r.body, b"hello world");
}

#[test]
fn filesystem_metadata_is_imported_on_first_start() {
    let (dir, config) = old_data_dir();
    let data = dir.path().join("data");
    let mut core = Core::start_in(dir, &config);
    check_everything_survived(&core);
    finish_the_open_session(&core);
    assert!(
        data.join("repositories.imported").is_dir(),
        "the old metadata is kept aside"
    );
    assert!(!data.join("repositories").exists());
    // A restart imports nothing again and serves the same.
    core.restart_same_ports();
    check_everything_survived(&core);
}

#[test]
fn berth_core_migrate_imports_without_serving() {
    let (dir, config) = old_data_dir();
    let path = dir.path().join("core.yaml");
    std::fs::write(&path, &config).unwrap();
    let out = run(Command::new(berth_tests::bin("berth-core"))
        .args(["migrate", "--config"])
        .arg(&path));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported"));
    assert!(dir.path().join("data/repositories.imported").is_dir());
    let core = Core::start_in(dir, &config);
    check_everything_survived(&core);
}
