//! Real registry clients against a real `berth-core`: skopeo, podman and the Docker engine
//! push and pull, and digests survive the round trip.

use std::fs;

use berth_tests::core::Core;
use berth_tests::http;
use berth_tests::image::write_layout;
use berth_tests::tools::{podman, run, skopeo, Dockerd};

#[test]
fn skopeo_push_pull_single_and_multi_arch() {
    let core = Core::start();
    let reg = core.connector("hosted").to_owned();
    let work = tempfile::tempdir().unwrap();

    // Single-platform image.
    let single = write_layout(
        &work.path().join("single"),
        "v1",
        &[("linux", "amd64")],
        &[300_000, 50_000],
        1,
    );
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", work.path().join("single").display()))
        .arg(format!("docker://{reg}/skopeo/single:v1")));
    let out = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/skopeo/single:v1")));
    assert_eq!(
        http::digest(&out.stdout),
        single.top,
        "manifest bytes preserved"
    );

    // Multi-arch index with --all.
    let multi = write_layout(
        &work.path().join("multi"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[200_000],
        2,
    );
    run(skopeo()
        .args(["copy", "--all", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", work.path().join("multi").display()))
        .arg(format!("docker://{reg}/skopeo/multi:v1")));
    let out = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reg}/skopeo/multi:v1")));
    assert_eq!(
        http::digest(&out.stdout),
        multi.top,
        "index digest preserved"
    );

    // Pull it all back and compare every blob.
    let back = work.path().join("back");
    run(skopeo()
        .args(["copy", "--all", "--src-tls-verify=false"])
        .arg(format!("docker://{reg}/skopeo/multi:v1"))
        .arg(format!("oci:{}:v1", back.display())));
    for d in multi
        .manifests
        .iter()
        .chain(&multi.layers)
        .chain([&multi.top])
    {
        let orig = fs::read(work.path().join("multi/blobs/sha256").join(&d[7..])).unwrap();
        let pulled = fs::read(back.join("blobs/sha256").join(&d[7..])).unwrap_or_default();
        assert!(orig == pulled, "blob {d} differs after the round trip");
    }
    let tags = run(skopeo()
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!("docker://{reg}/skopeo/multi")));
    assert!(String::from_utf8_lossy(&tags.stdout).contains("\"v1\""));
}

#[test]
fn podman_push_pull() {
    let core = Core::start();
    let reg = core.connector("hosted").to_owned();
    // podman names an image pulled from `oci:PATH` after PATH, which must be lower-case.
    let work = tempfile::Builder::new()
        .prefix("podman")
        .tempdir_in("/tmp")
        .unwrap();
    let lower = std::path::PathBuf::from(format!("/tmp/berth-podman-{}", std::process::id()));
    let _ = fs::remove_dir_all(&lower);
    let layout = lower.join("podimg");
    write_layout(&layout, "v1", &[("linux", "amd64")], &[400_000], 3);
    let root = work.path().join("podman");
    let out = run(podman(&root)
        .arg("pull")
        .arg(format!("oci:{}:v1", layout.display())));
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .to_owned();
    let local = id.as_str();
    let remote = format!("{reg}/podman/app:v1");
    run(podman(&root).args(["tag", local, &remote]));
    run(podman(&root).args(["push", "--tls-verify=false", &remote]));
    run(podman(&root).args(["rmi", "-f", local, &remote]));
    run(podman(&root).args(["pull", "--tls-verify=false", &remote]));
    let out = run(podman(&root).args(["image", "inspect", "--format", "{{.Digest}}", &remote]));
    let pulled = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    // podman re-encodes the manifest on push, so compare with what the registry holds.
    let r = http::request(&reg, "GET", "/v2/podman/app/manifests/v1", &[("Accept", "application/vnd.oci.image.manifest.v1+json,application/vnd.docker.distribution.manifest.v2+json")], b"").unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(pulled, http::digest(&r.body));
    assert_eq!(r.header("docker-content-digest"), Some(pulled.as_str()));
    let _ = fs::remove_dir_all(&lower);
}

#[test]
fn docker_push_pull() {
    let core = Core::start();
    let reg = core.connector("hosted").to_owned();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("dimg");
    write_layout(&layout, "v1", &[("linux", "amd64")], &[500_000, 100_000], 4);
    let dockerd = Dockerd::start();
    let remote = format!("{reg}/docker/app:v1");
    run(skopeo()
        .args(["copy", "--dest-daemon-host"])
        .arg(format!("unix://{}", dockerd.socket.display()))
        .arg(format!("oci:{}:v1", layout.display()))
        .arg(format!("docker-daemon:{remote}")));
    let push = run(dockerd.docker().args(["push", &remote]));
    let push_out = String::from_utf8_lossy(&push.stdout).to_string();
    let pushed_digest = push_out
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in docker push output: {push_out}"))
        .to_owned();
    run(dockerd.docker().args(["rmi", &remote]));
    run(dockerd.docker().args(["pull", &remote]));
    let out = run(dockerd.docker().args([
        "image",
        "inspect",
        "--format",
        "{{index .RepoDigests 0}}",
        &remote,
    ]));
    let repo_digest = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        repo_digest.ends_with(&pushed_digest),
        "{repo_digest} vs {pushed_digest}"
    );
    let r = http::request(&reg, "GET", "/v2/docker/app/tags/list", &[], b"").unwrap();
    assert_eq!(r.json()["tags"], serde_json::json!(["v1"]));
}
