//! The web UI in a real browser: headless Debian Chromium, driven through chromedriver, against
//! a running core with pushed images. Logs in, clicks through repository → image → tag, reads
//! the manifest page (layers, config, referrers, the pull line), searches, and as an admin
//! creates a repository and previews cleanup and garbage collection. Screenshots of each step
//! go to `$BERTH_SCREENSHOTS` (default: a `berth-ui-screenshots` folder in the temp dir).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_json::json;

use berth_tests::core::{hash_password, Core};
use berth_tests::edge::free_port;
use berth_tests::http::{self, request};
use berth_tests::registry::{oci_manifest, push_blob, put_manifest};
use berth_tests::webdriver::{available, Browser};

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn screenshots() -> PathBuf {
    std::env::var_os("BERTH_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-ui-screenshots"))
}

/// An image for `arch`; returns its manifest bytes.
fn push_image(addr: &str, image: &str, tag: Option<&str>, arch: &str) -> Vec<u8> {
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "created": "2026-11-30T12:00:00Z",
        "config": { "Cmd": ["/bin/server", "--port", "80"] },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap();
    let layer = vec![arch.as_bytes()[0]; 3000];
    for b in [&config, &layer] {
        assert_eq!(push_blob(addr, image, b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[&layer]);
    let reference = tag.map_or_else(|| http::digest(&m), str::to_owned);
    assert_eq!(
        put_manifest(addr, image, &reference, &m).unwrap().status,
        201
    );
    m
}

/// `app:v1` with a signature referring to it, and `multi:latest`, an index of two platforms.
fn seed(addr: &str) -> String {
    let app = push_image(addr, "app", Some("v1"), "amd64");
    let app_digest = http::digest(&app);
    let empty = b"{}";
    assert_eq!(push_blob(addr, "app", empty).unwrap().status, 201);
    let sig = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": http::digest(empty), "size": 2 },
        "layers": [{ "mediaType": "application/vnd.oci.empty.v1+json", "digest": http::digest(empty), "size": 2 }],
        "subject": { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": app_digest, "size": app.len() },
    }))
    .unwrap();
    let r = put_manifest(addr, "app", &http::digest(&sig), &sig).unwrap();
    assert_eq!(r.status, 201);
    let platforms: Vec<_> = ["amd64", "arm64"]
        .iter()
        .map(|arch| {
            let m = push_image(addr, "multi", None, arch);
            json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": http::digest(&m), "size": m.len(),
                "platform": { "os": "linux", "architecture": arch } })
        })
        .collect();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": INDEX, "manifests": platforms,
    }))
    .unwrap();
    let r = request(
        addr,
        "PUT",
        "/v2/multi/manifests/latest",
        &[("Content-Type", INDEX)],
        &index,
    )
    .unwrap();
    assert_eq!(r.status, 201);
    app_digest
}

fn login(b: &Browser, base: &str, user: &str, password: &str) {
    b.goto(&format!("{base}/ui/login"));
    b.type_into("#user", user);
    b.type_into("#password", password);
    b.click("#login");
}

#[test]
fn browse_log_in_and_administer_in_chromium() {
    if !available() {
        // .ci/run installs them; say so loudly rather than pass quietly elsewhere.
        panic!(
            "chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         auth:\n  users:\n\
         \x20   - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20   - {{ name: alice, password_hash: \"{}\", roles: [readers] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: readers, privileges: [{{ repositories: \"hosted\", actions: [read] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display(),
        hash_password("root-password"),
        hash_password("alice-password"),
    );
    let dir_path = dir.path().to_owned();
    let open = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir_path.join("data").display()
    );
    // Seed through an open core on the same storage, then serve it with access control.
    let seeder = Core::start_in(tempfile::tempdir().unwrap(), &open);
    let app_digest = seed(seeder.connector("hosted"));
    drop(seeder);
    let core = Core::start_in(dir, &config);
    let base = format!("http://{}/berth", core.main);
    let repo_port = core
        .connector("hosted")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let shots = screenshots();
    let b = Browser::start();

    // Anonymous: nothing readable, a way to log in.
    b.goto(&format!("{base}/"));
    assert!(b.body_text().contains("No repositories you may read"));
    b.click("#login-link");
    b.type_into("#user", "alice");
    b.type_into("#password", "wrong-password");
    b.click("#login");
    assert!(b.text("#error").contains("invalid user name or password"));
    login(&b, &base, "alice", "alice-password");
    assert!(b.body_text().contains("alice"));
    assert!(b.all("#nav-admin").is_empty(), "alice is no admin");
    b.screenshot(&shots, "1-repositories");

    // Repository → image → tag.
    b.click_text("a.repo", "hosted");
    let images: Vec<String> = b.all("a.image").iter().map(|e| b.element_text(e)).collect();
    assert_eq!(images, ["app", "multi"]);
    b.screenshot(&shots, "2-images");
    b.click_text("a.image", "app");
    let tags = b.text("#tags");
    assert!(
        tags.contains(&format!("docker pull 127.0.0.1:{repo_port}/app:v1")),
        "{tags}"
    );
    b.screenshot(&shots, "3-tags");
    b.click_text("a.tag", "v1");
    assert_eq!(b.text("#digest"), app_digest);
    let pull = b.text("#pull");
    assert!(
        pull.contains(&format!("docker pull 127.0.0.1:{repo_port}/app:v1")),
        "{pull}"
    );
    assert!(
        pull.contains(&format!("podman pull 127.0.0.1:{repo_port}/app:v1")),
        "{pull}"
    );
    assert_eq!(b.all("#layers tr").len(), 2, "a header and one layer");
    assert!(b.text("#layers").contains("2.9 KiB"));
    let config = b.text("#config");
    assert!(config.contains("linux/amd64") && config.contains("/bin/server --port 80"));
    assert!(b
        .text("#referrers")
        .contains("application/vnd.dev.cosign.artifact.sig.v1+json"));
    b.screenshot(&shots, "4-manifest");

    // Search, then an index's platforms.
    b.submit_into("#search", "mul");
    b.click_text("a.hit", "hosted / multi");
    b.click_text("a.tag", "latest");
    let platforms: Vec<String> = b
        .all("a.platform")
        .iter()
        .map(|e| b.element_text(e))
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    b.click_text("a.platform", "linux/arm64");
    assert!(b.text("#config").contains("linux/arm64"));
    b.screenshot(&shots, "5-platform");
    b.goto(&format!("{base}/ui/admin"));
    assert!(
        b.body_text().contains("for administrators"),
        "alice is refused"
    );

    // An admin: repositories, users, a repository created from the form, previews.
    b.click("#logout-link");
    login(&b, &base, "root", "root-password");
    b.click("#nav-admin");
    assert!(b.text("#admin-repositories").contains("hosted"));
    assert!(b.text("#users").contains("alice"));
    let port = free_port();
    b.type_into("#new-name", "made-in-ui");
    b.type_into("#new-http", &format!("127.0.0.1:{port}"));
    b.click("#create-repo");
    assert!(b.text("#message").contains("repository made-in-ui created"));
    assert!(b
        .text("#admin-repositories")
        .contains(&format!("127.0.0.1:{port}")));
    let v2 = request(&format!("127.0.0.1:{port}"), "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(v2.status, 401, "the new port is served (and needs a login)");
    b.screenshot(&shots, "6-admin");
    b.click(".preview");
    assert!(b
        .text("#summary")
        .contains("The policies would remove 0 tags"));
    b.click("header nav a#nav-admin");
    b.click("#gc-dry-run");
    assert!(b.text("#summary").contains("A collection now would remove"));
    b.screenshot(&shots, "7-gc-preview");
    eprintln!("screenshots in {}", shots.display());
}
