//! Cleanup policies, immutable tags and quotas against a real core: an exact dry run, the run
//! itself (tag history names the policy), the collector freeing the bytes afterwards.

// Test code panics on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::thread;
use std::time::Duration;

use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::image::Noise;
use berth_tests::registry::{get, oci_manifest, push_blob, put_manifest};

fn core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         gc: {{ interval: 0s, grace: 1s, undo_window: 0s, history_retention: 1h }}\n\
         repositories:\n\
         \x20 - name: hosted\n\
         \x20   kind: hosted\n\
         \x20   connector: {{ http: 127.0.0.1:0 }}\n\
         \x20   immutable_tags: [\"^v[0-9]\"]\n\
         \x20   quota: 400KiB\n\
         \x20   cleanup:\n\
         \x20     - {{ name: keep-two-builds, tags: \"^build-\", keep_last: 2 }}\n\
         \x20     - {{ name: stale-dev, tags: \"^dev-\", not_pulled_for: 2s }}\n\
         \x20     - {{ name: untagged, untagged: true }}\n",
        dir.path().join("data").display()
    );
    Core::start_in(dir, &config)
}

/// Pushes a small image (a shared base, a layer of its own) under `reference`; its digest.
fn push(addr: &str, reference: &str, seed: u64) -> (String, String) {
    let mut unique = vec![0u8; 8192];
    Noise::new(seed).fill(&mut unique);
    let base = b"a base layer every image shares".to_vec();
    let config = format!("{{\"seed\":{seed}}}").into_bytes();
    for b in [&config, &base, &unique] {
        assert_eq!(push_blob(addr, "app", b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[&base, &unique]);
    let r = put_manifest(addr, "app", reference, &m).unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    (http::digest(&m), http::digest(&unique))
}

fn status(addr: &str, reference: &str) -> u16 {
    get(addr, "app", "manifests", reference).unwrap().status
}

fn post(core: &Core, path: &str) -> serde_json::Value {
    let r = request(
        &core.main,
        "POST",
        &format!("/berth/api/v1{path}"),
        &[("Content-Type", "application/json")],
        b"",
    )
    .unwrap();
    assert_eq!(
        r.status,
        200,
        "{path}: {}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

fn listed(report: &serde_json::Value, key: &str, field: &str) -> Vec<String> {
    let mut v: Vec<String> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[field].as_str().unwrap_or("").to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn policies_preview_exactly_then_remove_and_the_collector_frees_the_bytes() {
    let core = core();
    let addr = core.connector("hosted").to_owned();
    let mut builds = Vec::new();
    for n in 1..=4 {
        builds.push(push(&addr, &format!("build-{n}"), n));
        thread::sleep(Duration::from_millis(1100)); // pushes one second apart: ages differ
    }
    let (v1, _) = push(&addr, "v1.0", 10);
    let (stale, _) = push(&addr, "dev-stale", 11);
    let (fresh, _) = push(&addr, "dev-fresh", 12);
    let (loose, _) = push(&addr, "placeholder", 13);
    let by_digest = format!("/v2/app/manifests/{loose}");
    // The placeholder tag goes; its manifest stays, untagged.
    assert_eq!(
        request(&addr, "DELETE", "/v2/app/manifests/placeholder", &[], b"")
            .unwrap()
            .status,
        202
    );
    assert_eq!(
        get(&addr, "app", "manifests", &loose).unwrap().status,
        200,
        "{by_digest}"
    );
    // Unix seconds: more than 2 s have passed for certain only after 3.
    thread::sleep(Duration::from_millis(3100));
    assert_eq!(status(&addr, "dev-fresh"), 200); // pulled: not stale

    // Immutable tags: neither moved nor deleted, by tag or by digest.
    let moved = put_manifest(&addr, "app", "v1.0", &oci_manifest(b"{}", &[])).unwrap();
    assert_eq!((moved.status, moved.code().as_str()), (403, "DENIED"));
    assert!(String::from_utf8_lossy(&moved.body).contains("immutable"));
    for reference in ["v1.0".to_owned(), v1.clone()] {
        let r = request(
            &addr,
            "DELETE",
            &format!("/v2/app/manifests/{reference}"),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(
            (r.status, r.code().as_str()),
            (403, "DENIED"),
            "{reference}"
        );
    }

    // The dry run lists exactly what goes, and changes nothing.
    let dry = post(&core, "/repositories/hosted/cleanup?dry_run=true");
    assert_eq!(
        listed(&dry, "tags", "tag"),
        vec!["build-1", "build-2", "dev-stale"]
    );
    let mut expected = vec![
        builds[0].0.clone(),
        builds[1].0.clone(),
        stale.clone(),
        loose.clone(),
    ];
    expected.sort();
    assert_eq!(listed(&dry, "manifests", "digest"), expected);
    assert!(dry["bytes"].as_u64().unwrap() >= 4 * 8192, "{dry}");
    assert_eq!(status(&addr, "build-1"), 200);

    // The run does what the dry run said; history names the policy.
    let run = post(&core, "/repositories/hosted/cleanup");
    assert_eq!(listed(&run, "tags", "tag"), listed(&dry, "tags", "tag"));
    assert_eq!(listed(&run, "manifests", "digest"), expected);
    for gone in ["build-1", "build-2", "dev-stale"] {
        assert_eq!(status(&addr, gone), 404, "{gone}");
    }
    for kept in ["build-3", "build-4", "v1.0", "dev-fresh"] {
        assert_eq!(status(&addr, kept), 200, "{kept}");
    }
    assert_eq!(get(&addr, "app", "manifests", &fresh).unwrap().status, 200);
    let h = request(
        &core.main,
        "GET",
        "/berth/api/v1/repositories/hosted/history?image=app&tag=build-1",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(h.json()[0]["reason"], "policy keep-two-builds");
    assert_eq!(h.json()[0]["actor"], "cleanup");
    let last = request(
        &core.main,
        "GET",
        "/berth/api/v1/repositories/hosted/cleanup",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(last.json()["last_run"]["tags"].as_array().unwrap().len(), 3);

    // The collector frees the bytes of what the policies removed, and keeps the shared base.
    thread::sleep(Duration::from_millis(1100));
    let gc = post(&core, "/gc");
    assert!(gc["bytes_freed"].as_u64().unwrap() >= 4 * 8192, "{gc}");
    assert_eq!(
        get(&addr, "app", "blobs", &builds[0].1).unwrap().status,
        404
    );
    assert_eq!(
        get(&addr, "app", "blobs", &builds[3].1).unwrap().status,
        200
    );
}

#[test]
fn a_push_beyond_the_quota_is_denied_naming_it() {
    let core = core();
    let addr = core.connector("hosted").to_owned();
    let mut big = vec![0u8; 300 * 1024];
    Noise::new(1).fill(&mut big);
    assert_eq!(push_blob(&addr, "app", &big).unwrap().status, 201);
    Noise::new(2).fill(&mut big);
    let r = push_blob(&addr, "app", &big).unwrap();
    assert_eq!((r.status, r.code().as_str()), (403, "DENIED"));
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("quota of 400KiB"), "{body}");
    assert_eq!(
        get(&addr, "app", "blobs", &http::digest(&big))
            .unwrap()
            .status,
        404
    );
    let u = request(
        &core.main,
        "GET",
        "/berth/api/v1/repositories/hosted/usage",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(u.json()["bytes"].as_u64(), Some(300 * 1024));
}
