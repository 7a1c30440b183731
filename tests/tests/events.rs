//! Event notifications to a real HTTP receiver (Python's `http.server`, started and stopped as
//! a process): pushes, pulls, tags and deletes arrive in Distribution's envelope with the
//! configured headers; while the receiver is down the core keeps serving, counts failures and
//! keeps the events, and delivers them once it is back; a full queue drops its oldest events
//! and says so in the metrics; `ignore.actions` filters.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_tests::core::Core;
use berth_tests::edge::free_port;
use berth_tests::http::{digest, request};
use berth_tests::prometheus::{sample, scrape};
use berth_tests::registry::{get, oci_manifest, push_blob, put_manifest};
use berth_tests::webhook::{received, Receiver};

/// Waits until `done` holds for the events on `path`.
fn wait_for(
    out: &Path,
    path: &str,
    what: &str,
    done: impl Fn(&[(serde_json::Value, serde_json::Value)]) -> bool,
) -> Vec<(serde_json::Value, serde_json::Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = received(out, path);
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "{what}: got {events:#?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find<'a>(
    events: &'a [(serde_json::Value, serde_json::Value)],
    action: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<&'a (serde_json::Value, serde_json::Value)> {
    events
        .iter()
        .find(|(e, _)| e["action"] == action && pred(&e["target"]))
}

fn metric(core: &Core, prefix: &str) -> f64 {
    sample(&scrape(core.metrics.as_deref().unwrap()), prefix)
}

fn push_image(repo: &str, image: &str, tag: &str, layer: &[u8]) -> Vec<u8> {
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    for b in [&config[..], layer] {
        assert_eq!(push_blob(repo, image, b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[layer]);
    assert_eq!(put_manifest(repo, image, tag, &m).unwrap().status, 201);
    m
}

fn core_with_hooks(dir: tempfile::TempDir, port: u16, dead_port: u16) -> Core {
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nmetrics: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         notifications:\n  allow_private_targets: true\n  endpoints:\n\
         \x20   - name: hooks\n      url: http://127.0.0.1:{port}/events\n      \
         headers: {{ Authorization: Bearer s3cret }}\n      backoff: 100ms\n      max_backoff: 400ms\n\
         \x20   - name: no-pulls\n      url: http://127.0.0.1:{port}/no-pulls\n      ignore: {{ actions: [pull] }}\n\
         \x20   - name: tiny\n      url: http://127.0.0.1:{dead_port}/never\n      queue: 2\n      backoff: 1s\n",
        dir.path().join("data").display()
    );
    Core::start_in(dir, &config)
}

#[test]
fn events_reach_a_receiver_that_goes_down_and_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let port = free_port();
    let receiver = Receiver::start(dir.path(), port, &out);
    let core = core_with_hooks(tempfile::tempdir().unwrap(), port, free_port());
    let repo = core.connector("hosted").to_owned();

    let layer = vec![7u8; 4096];
    let manifest = push_image(&repo, "team/app", "v1", &layer);
    let manifest_digest = digest(&manifest);
    let pulled = get(&repo, "team/app", "manifests", "v1").unwrap();
    assert_eq!(pulled.status, 200);
    let layer_digest = digest(&layer);
    let blob = get(&repo, "team/app", "blobs", &layer_digest).unwrap();
    assert_eq!(blob.status, 200);
    let mounted = request(
        &repo,
        "POST",
        &format!("/v2/team/other/blobs/uploads/?mount={layer_digest}&from=team/app"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(mounted.status, 201);
    let events = wait_for(&out, "/events", "push, pulls and a mount", |ev| {
        find(ev, "pull", |t| t["tag"] == "v1").is_some() && find(ev, "mount", |_| true).is_some()
    });
    let (blob_pull, _) = find(&events, "pull", |t| t["digest"] == layer_digest.as_str())
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(blob_pull["target"]["size"], layer.len(), "{blob_pull}");
    assert_eq!(blob_pull["target"]["mediaType"], "application/octet-stream");
    let (mount, _) = find(&events, "mount", |_| true).unwrap();
    assert_eq!(mount["target"]["repository"], "team/other", "{mount}");
    assert_eq!(mount["target"]["fromRepository"], "team/app");
    assert_eq!(mount["target"]["digest"], layer_digest.as_str());
    let (push, record) = find(&events, "push", |t| t["tag"] == "v1").expect("manifest push");
    assert_eq!(
        record["content_type"],
        "application/vnd.docker.distribution.events.v1+json"
    );
    assert_eq!(record["authorization"], "Bearer s3cret");
    let t = &push["target"];
    assert_eq!(t["repository"], "team/app");
    assert_eq!(t["digest"], manifest_digest.as_str());
    assert_eq!(t["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(t["size"], manifest.len());
    assert!(t["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/v2/team/app/manifests/{manifest_digest}")));
    assert_eq!(push["request"]["method"], "PUT");
    assert!(!push["source"]["instanceID"].as_str().unwrap().is_empty());
    assert!(!push["id"].as_str().unwrap().is_empty());
    assert!(push["timestamp"].as_str().unwrap().contains('T'));
    let (blob_push, _) = find(&events, "push", |t| {
        t["digest"] == layer_digest.as_str() && t["mediaType"] == "application/octet-stream"
    })
    .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(blob_push["target"]["size"], layer.len(), "{blob_push}");
    assert_eq!(blob_push["target"]["length"], layer.len());

    // The receiver goes away; requests go on as before and the events wait.
    drop(receiver);
    push_image(&repo, "team/app", "v2", &[8u8; 2048]);
    let del = request(
        &repo,
        "DELETE",
        &format!("/v2/team/app/manifests/{manifest_digest}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(del.status, 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(
        &core,
        "berth_notification_failures_total{endpoint=\"hooks\"}",
    ) < 2.0
    {
        assert!(Instant::now() < deadline, "no failed deliveries counted");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metric(&core, "berth_notification_pending{endpoint=\"hooks\"}") >= 1.0);

    // Back again: everything queued arrives.
    let _receiver = Receiver::start(dir.path(), port, &out);
    let events = wait_for(&out, "/events", "events queued while down", |ev| {
        find(ev, "push", |t| t["tag"] == "v2").is_some()
            && find(ev, "delete", |t| t["digest"] == manifest_digest.as_str()).is_some()
    });
    assert!(find(&events, "delete", |t| t["repository"] == "team/app").is_some());
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&core, "berth_notification_pending{endpoint=\"hooks\"}") > 0.0 {
        assert!(Instant::now() < deadline, "queue not drained");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        metric(
            &core,
            "berth_notification_events_total{endpoint=\"hooks\",result=\"delivered\"}"
        ) >= 7.0
    );

    // `ignore.actions: [pull]`: the same traffic without the pull.
    let quiet = wait_for(&out, "/no-pulls", "no-pulls endpoint", |ev| {
        find(ev, "push", |t| t["tag"] == "v2").is_some()
    });
    assert!(find(&quiet, "pull", |_| true).is_none(), "{quiet:#?}");

    // An endpoint that never answers holds at most `queue` events and counts the rest.
    assert_eq!(
        metric(&core, "berth_notification_pending{endpoint=\"tiny\"}"),
        2.0
    );
    assert!(
        metric(
            &core,
            "berth_notification_events_total{endpoint=\"tiny\",result=\"dropped\"}"
        ) >= 5.0
    );
}

#[test]
fn a_bad_endpoint_is_a_config_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         notifications:\n  endpoints:\n    - {{ name: x, url: \"ftp://example/\" }}\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("core.yaml"), config).unwrap();
    let out = Command::new(berth_tests::bin("berth-core"))
        .args(["check-config"])
        .arg(dir.path().join("core.yaml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("notifications.endpoints[0].url"), "{err}");
}

/// What the registry removes or brings back itself is an event too: a cleanup policy's
/// removals are deletes (as a client's `DELETE` would be), an admin's restore a push, named by
/// the main port's `<repository>/<image>` and a `berth-…` user agent.
#[test]
fn cleanup_removals_and_restores_are_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let port = free_port();
    let _receiver = Receiver::start(dir.path(), port, &out);
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nmetrics: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - name: hosted\n    kind: hosted\n    connector: {{ http: 127.0.0.1:0 }}\n    \
         cleanup: [{{ name: two-builds, tags: '^b-', keep_last: 1 }}]\n\
         notifications:\n  allow_private_targets: true\n  endpoints:\n    - {{ name: hooks, url: 'http://127.0.0.1:{port}/events' }}\n",
        dir.path().join("data").display()
    );
    let core = Core::start_in(tempfile::tempdir().unwrap(), &config);
    let repo = core.connector("hosted").to_owned();
    let old = digest(&push_image(&repo, "app", "b-1", &[1u8; 1024]));
    std::thread::sleep(Duration::from_millis(1100)); // pushes a second apart: ages differ
    push_image(&repo, "app", "b-2", &[2u8; 1024]);

    let post = |path: &str, body: &[u8]| {
        let r = request(
            &core.main,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    post("/api/v1/repositories/hosted/cleanup", b"");
    let events = wait_for(&out, "/events", "cleanup deletes", |ev| {
        find(ev, "delete", |t| t["tag"] == "b-1").is_some()
            && find(ev, "delete", |t| t["digest"] == old.as_str()).is_some()
    });
    let (tag_gone, _) = find(&events, "delete", |t| t["tag"] == "b-1").unwrap();
    assert_eq!(tag_gone["target"]["repository"], "hosted/app");
    assert_eq!(tag_gone["actor"]["name"], "cleanup");
    assert_eq!(tag_gone["request"]["useragent"], "berth-cleanup");
    assert!(find(&events, "delete", |t| t["tag"] == "b-2").is_none());
    // And in the metrics: one run, one tag and its manifest removed.
    assert_eq!(
        metric(&core, "berth_cleanup_runs_total{repository=\"hosted\"}"),
        1.0
    );
    for kind in ["tag", "manifest"] {
        let series =
            format!("berth_cleanup_removed_total{{repository=\"hosted\",kind=\"{kind}\"}}");
        assert_eq!(metric(&core, &series), 1.0, "{series}");
    }

    post(
        "/api/v1/repositories/hosted/restore",
        br#"{"image":"app","tag":"b-1"}"#,
    );
    let events = wait_for(&out, "/events", "restore push", |ev| {
        find(ev, "push", |t| {
            t["tag"] == "b-1" && t["repository"] == "hosted/app"
        })
        .is_some()
    });
    let (back, _) = find(&events, "push", |t| t["repository"] == "hosted/app").unwrap();
    assert_eq!(back["target"]["digest"], old.as_str());
    assert_eq!(back["request"]["useragent"], "berth-restore");
    assert_eq!(get(&repo, "app", "manifests", "b-1").unwrap().status, 200);
}
