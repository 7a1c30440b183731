//! The life-cycle against a real core: online garbage collection while clients push, delete
//! and re-push; undo through the admin API; dry runs; the `berth-core gc` CLI beside a running
//! server on the same stores.

// Test code panics on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::image::Noise;
use berth_tests::registry::{get, oci_manifest, push_blob, put_manifest};

fn core_with(gc: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         gc: {{ {gc} }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display()
    );
    Core::start_in(dir, &config)
}

/// An image as a client pushes it: blobs (config first), manifest, tag.
#[derive(Clone)]
struct Image {
    name: String,
    tag: String,
    blobs: Vec<Vec<u8>>,
    manifest: Vec<u8>,
}

impl Image {
    fn new(name: &str, tag: &str, base: &[u8], noise: &mut Noise) -> Image {
        let config = format!("{{\"image\":\"{name}:{tag}\"}}").into_bytes();
        let mut unique = vec![0u8; 4096 + (tag.len() * 997) % 28_000];
        noise.fill(&mut unique);
        let manifest = oci_manifest(&config, &[base, &unique]);
        Image {
            name: name.to_owned(),
            tag: tag.to_owned(),
            blobs: vec![config, base.to_vec(), unique],
            manifest,
        }
    }

    fn digest(&self) -> String {
        http::digest(&self.manifest)
    }

    /// Pushes it; a push the collector overtook (its blobs older than the grace period when
    /// the manifest arrived) is refused with MANIFEST_BLOB_UNKNOWN and pushed again, as
    /// clients do. Anything else is a failure.
    fn push(&self, addr: &str) {
        for attempt in 0..5 {
            for b in &self.blobs {
                let r = push_blob(addr, &self.name, b).unwrap();
                assert_eq!(
                    r.status,
                    201,
                    "blob push: {}",
                    String::from_utf8_lossy(&r.body)
                );
            }
            let r = put_manifest(addr, &self.name, &self.tag, &self.manifest).unwrap();
            if r.status == 201 {
                return;
            }
            assert!(
                r.status == 400 && r.code() == "MANIFEST_BLOB_UNKNOWN" && attempt < 4,
                "manifest push: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            );
        }
    }

    /// Pulls it by tag and checks every byte.
    fn verify(&self, addr: &str) {
        let m = get(addr, &self.name, "manifests", &self.tag).unwrap();
        assert_eq!(m.status, 200, "{}:{} manifest", self.name, self.tag);
        assert_eq!(
            m.body, self.manifest,
            "{}:{} manifest bytes",
            self.name, self.tag
        );
        for b in &self.blobs {
            let r = get(addr, &self.name, "blobs", &http::digest(b)).unwrap();
            assert_eq!(
                r.status,
                200,
                "{}:{} blob {}",
                self.name,
                self.tag,
                http::digest(b)
            );
            assert!(r.body == *b, "{}:{} blob bytes", self.name, self.tag);
        }
    }
}

/// `sha256:<hex>` of every file in the blob store.
fn stored_digests(data: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let root = data.join("blobs/sha256");
    for prefix in std::fs::read_dir(&root).unwrap() {
        for f in std::fs::read_dir(prefix.unwrap().path()).unwrap() {
            out.insert(format!(
                "sha256:{}",
                f.unwrap().file_name().to_string_lossy()
            ));
        }
    }
    out
}

fn gc_api(core: &Core, query: &str) -> http::Response {
    request(
        &core.main,
        "POST",
        &format!("/berth/api/v1/gc{query}"),
        &[("Content-Type", "application/json")],
        b"",
    )
    .unwrap()
}

fn gc_cli(core: &Core, args: &[&str]) -> String {
    let out = Command::new(berth_tests::bin("berth-core"))
        .arg("gc")
        .arg("--config")
        .arg(core.config_path())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "berth-core gc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn gc_while_pushing_deleting_and_repushing_keeps_every_served_image_whole() {
    let core = core_with("interval: 0s, grace: 2s, undo_window: 0s, history_retention: 1h");
    let addr = core.connector("hosted").to_owned();
    let mut base = vec![0u8; 64 * 1024];
    Noise::new(7).fill(&mut base);
    let live: Arc<Mutex<Vec<Image>>> = Arc::default();
    let deleted: Arc<Mutex<Vec<Image>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(12);

    let mut workers = Vec::new();
    for p in 0..3u64 {
        let (addr, base, live) = (addr.clone(), base.clone(), live.clone());
        workers.push(thread::spawn(move || {
            let mut noise = Noise::new(100 + p);
            let mut n = 0;
            while Instant::now() < deadline {
                let img = Image::new(&format!("app{p}"), &format!("t{n}"), &base, &mut noise);
                img.push(&addr);
                live.lock().unwrap().push(img);
                n += 1;
            }
        }));
    }
    let (a, l, d) = (addr.clone(), live.clone(), deleted.clone());
    workers.push(thread::spawn(move || {
        let mut round = 0usize;
        while Instant::now() < deadline {
            thread::sleep(Duration::from_millis(150));
            round += 1;
            if round.is_multiple_of(3) {
                let again = d.lock().unwrap().pop();
                if let Some(img) = again {
                    img.push(&a);
                    l.lock().unwrap().push(img);
                }
                continue;
            }
            let victim = {
                let mut l = l.lock().unwrap();
                let n = l.len();
                (n > 2).then(|| l.remove(round * 7 % n))
            };
            if let Some(img) = victim {
                let path = format!("/v2/{}/manifests/{}", img.name, img.digest());
                assert_eq!(request(&a, "DELETE", &path, &[], b"").unwrap().status, 202);
                d.lock().unwrap().push(img);
            }
        }
    }));
    // The collector loops meanwhile: in the server, and as the CLI beside it.
    let mut runs = 0;
    let mut removed = 0;
    while Instant::now() < deadline {
        if runs % 4 == 3 {
            gc_cli(&core, &[]);
        } else {
            let r = gc_api(&core, "");
            assert!(
                r.status == 200 || r.status == 409,
                "{}",
                String::from_utf8_lossy(&r.body)
            );
            removed += r.json()["blobs_removed"].as_u64().unwrap_or(0);
        }
        runs += 1;
        thread::sleep(Duration::from_millis(300));
    }
    for w in workers {
        if w.join().is_err() {
            let log = core.log();
            let errors: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("status=500"))
                .collect();
            panic!("a client failed; core errors:\n{}", errors.join("\n"));
        }
    }
    assert!(runs >= 10, "the collector ran {runs} times");

    // Once the grace period has passed, one more collection takes everything unreachable
    // (touch times are milliseconds: a 2 s grace has passed 2.1 s after the last touch).
    thread::sleep(Duration::from_millis(2100));
    let last = gc_api(&core, "");
    assert_eq!(last.status, 200);
    removed += last.json()["blobs_removed"].as_u64().unwrap();
    let live = live.lock().unwrap().clone();
    let deleted = deleted.lock().unwrap().clone();
    assert!(
        live.len() > 20 && !deleted.is_empty() && removed > 0,
        "{} live, {} deleted, {removed} blobs removed",
        live.len(),
        deleted.len()
    );
    let mut reachable = BTreeSet::new();
    for img in &live {
        img.verify(&addr);
        reachable.insert(img.digest());
        reachable.extend(img.blobs.iter().map(|b| http::digest(b)));
    }
    for img in &deleted {
        let r = get(&addr, &img.name, "manifests", &img.digest()).unwrap();
        assert_eq!(r.status, 404, "a deleted manifest stays deleted");
    }
    let stored = stored_digests(&core.dir.path().join("data"));
    let extra: Vec<_> = stored.difference(&reachable).collect();
    let missing: Vec<_> = reachable.difference(&stored).collect();
    assert!(
        extra.is_empty(),
        "unreferenced bytes left on disk: {extra:?}"
    );
    assert!(missing.is_empty(), "reachable bytes gone: {missing:?}");
    assert!(
        core.log().contains("delete blob"),
        "audit lines name removed blobs"
    );
}

#[test]
fn deletes_are_undone_through_the_admin_api_until_the_collector_may_take_them() {
    let core = core_with("interval: 0s, grace: 1s, undo_window: 1h");
    let addr = core.connector("hosted").to_owned();
    let main = core.main.clone();
    let base = b"shared base layer".to_vec();
    let mut noise = Noise::new(3);
    let one = Image::new("app", "latest", &base, &mut noise);
    let mut two = Image::new("app", "latest", &base, &mut noise);
    two.blobs[0] = b"{\"image\":\"two\"}".to_vec();
    two.manifest = oci_manifest(&two.blobs[0], &[&two.blobs[1], &two.blobs[2]]);
    one.push(&addr);
    two.push(&addr);

    // History: the tag was created, then moved.
    let h = request(
        &main,
        "GET",
        "/berth/api/v1/repositories/hosted/history?image=app&tag=latest",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(h.status, 200);
    let events = h.json();
    assert_eq!(events.as_array().unwrap().len(), 2, "{events}");
    assert_eq!(events[0]["digest"], two.digest().as_str());
    assert_eq!(events[0]["previous"], one.digest().as_str());
    assert_eq!(events[0]["actor"], "anonymous");

    // Restore the moved tag: it points at the first image again.
    let restore = |body: &str| {
        request(
            &main,
            "POST",
            "/berth/api/v1/repositories/hosted/restore",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap()
    };
    let r = restore(r#"{"image":"app","tag":"latest"}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["digest"], one.digest().as_str());
    one.verify(&addr);

    // Delete the second image; a collection past the grace period keeps its bytes (the undo
    // window holds them), a dry run says so, and a restore brings it back whole.
    let path = format!("/v2/app/manifests/{}", two.digest());
    assert_eq!(
        request(&addr, "DELETE", &path, &[], b"").unwrap().status,
        202
    );
    assert_eq!(
        get(&addr, "app", "manifests", &two.digest())
            .unwrap()
            .status,
        404
    );
    thread::sleep(Duration::from_millis(2100));
    let dry = gc_api(&core, "?dry_run=true");
    assert_eq!(dry.status, 200);
    let preview = &dry.json()["preview"];
    assert_eq!(preview["manifest_count"], 0, "{preview}");
    assert_eq!(gc_api(&core, "").status, 200);
    let r = restore(&format!(r#"{{"image":"app","digest":"{}"}}"#, two.digest()));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        get(&addr, "app", "manifests", &two.digest()).unwrap().body,
        two.manifest
    );
    for b in &two.blobs {
        assert_eq!(
            get(&addr, "app", "blobs", &http::digest(b)).unwrap().status,
            200
        );
    }

    // A blob no manifest names: the CLI's dry run lists it and leaves it, the real run frees it.
    let orphan = b"pushed, never referenced".to_vec();
    let od = http::digest(&orphan);
    assert_eq!(push_blob(&addr, "app", &orphan).unwrap().status, 201);
    thread::sleep(Duration::from_millis(2100));
    let out = gc_cli(&core, &["--dry-run"]);
    assert!(out.contains(&format!("would remove blob {od}")), "{out}");
    assert_eq!(get(&addr, "app", "blobs", &od).unwrap().status, 200);
    let out = gc_cli(&core, &[]);
    assert!(
        out.contains("removed 0 manifests, 1 blob links, 1 blobs"),
        "{out}"
    );
    assert_eq!(get(&addr, "app", "blobs", &od).unwrap().status, 404);
    assert!(!stored_digests(&core.dir.path().join("data")).contains(&od));

    // Usage, and clear errors for what cannot be done.
    let u = request(
        &main,
        "GET",
        "/berth/api/v1/repositories/hosted/usage",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(u.status, 200);
    assert_eq!(
        (u.json()["manifests"].as_u64(), u.json()["tags"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(u.json()["bytes"].as_u64().unwrap() > 0);
    let r = restore(r#"{"image":"app"}"#);
    assert_eq!(r.status, 400);
    let r = restore(r#"{"image":"app","tag":"never-pushed"}"#);
    assert_eq!((r.status, r.code().as_str()), (404, "NOT_FOUND"));
    let r = request(
        &main,
        "GET",
        "/berth/api/v1/repositories/nope/usage",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.code().as_str()), (404, "NOT_FOUND"));
    let r = request(&main, "DELETE", "/berth/api/v1/gc", &[], b"").unwrap();
    assert_eq!(r.status, 405);
    let status = request(&main, "GET", "/berth/api/v1/gc", &[], b"").unwrap();
    assert!(status.json()["reports"].as_array().unwrap().len() >= 2);
}

/// Issue 26: with `grace: 0s, undo_window: 0s` a deleted image's bytes go in the very next
/// collection, not up to a second later (touch and delete times are milliseconds now: with
/// whole seconds, a collection in the same second as the delete kept everything).
#[test]
fn a_zero_grace_collects_what_was_deleted_a_moment_ago() {
    let core = core_with("interval: 0s, grace: 0s, undo_window: 0s");
    let addr = core.connector("hosted").to_owned();
    let data = core.dir.path().join("data");
    let mut noise = Noise::new(26);
    let img = Image::new("app", "v1", b"a base layer of its own", &mut noise);
    for round in 0..3 {
        img.push(&addr);
        let before = stored_digests(&data);
        assert!(
            before.contains(&http::digest(&img.blobs[2])),
            "round {round}"
        );
        let path = format!("/v2/app/manifests/{}", img.digest());
        assert_eq!(
            request(&addr, "DELETE", &path, &[], b"").unwrap().status,
            202
        );
        std::thread::sleep(Duration::from_millis(20));
        let r = gc_api(&core, "");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let after = stored_digests(&data);
        for b in &img.blobs {
            assert!(
                !after.contains(&http::digest(b)),
                "round {round}: {} kept",
                http::digest(b)
            );
        }
    }
}
