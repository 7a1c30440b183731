//! What people do in the web UI every day, in a real browser (headless Debian Chromium through
//! chromedriver) against a core with access control on: a reader sees figures but no buttons
//! that would fail; a developer deletes a tag, brings it back from the history, deletes a
//! manifest, creates a pull-only API token, sees when and from where it was last used, revokes
//! it, and changes their password (which ends their session); an admin resets a password and
//! reads the overview. Every UI action is checked from outside too, with the registry API.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use berth_tests::core::{hash_password, Core};
use berth_tests::http::{self, basic, request};
use berth_tests::registry::{oci_manifest, push_blob, push_blob_as, put_manifest};
use berth_tests::webdriver::{available, Browser};

/// Pushes `app:<tag>` with a layer of `fill` bytes; its digest.
fn push_image(addr: &str, tag: &str, fill: u8) -> String {
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#).into_bytes();
    let layer = vec![fill; 5000];
    for b in [&config, &layer] {
        assert_eq!(push_blob(addr, "app", b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[&layer]);
    assert_eq!(put_manifest(addr, "app", tag, &m).unwrap().status, 201);
    http::digest(&m)
}

/// `GET /v2/app/manifests/<reference>` with `auth`: the status and the digest served.
fn manifest_as(addr: &str, auth: &str, reference: &str) -> (u16, String) {
    let path = format!("/v2/app/manifests/{reference}");
    let accept = "application/vnd.oci.image.manifest.v1+json";
    let r = request(
        addr,
        "GET",
        &path,
        &[("Authorization", auth), ("Accept", accept)],
        b"",
    )
    .unwrap();
    let digest = r.header("docker-content-digest").unwrap_or("").to_owned();
    (r.status, digest)
}

fn config(data: &std::path::Path) -> String {
    format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         auth:\n  users:\n\
         \x20   - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20   - {{ name: alice, password_hash: \"{}\", roles: [devs] }}\n\
         \x20   - {{ name: bob, password_hash: \"{}\", roles: [readers] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: devs, privileges: [{{ repositories: \"hosted\", actions: [read, write, delete] }}] }}\n\
         \x20   - {{ name: readers, privileges: [{{ repositories: \"hosted\", actions: [read] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display(),
        hash_password("root-password"),
        hash_password("alice-password"),
        hash_password("bob-password"),
    )
}

/// The tags the image page lists.
fn tags(b: &Browser, base: &str) -> Vec<String> {
    b.goto(&format!("{base}/ui/image?repo=hosted&image=app"));
    b.texts("a.tag")
}

#[test]
fn a_password_change_a_tag_deleted_and_restored_and_a_token_in_chromium() {
    assert!(
        available(),
        "chromium and chromium-driver are needed (apt-get install chromium chromium-driver)"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let open = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display()
    );
    let seeder = Core::start_in(tempfile::tempdir().unwrap(), &open);
    let v1 = push_image(seeder.connector("hosted"), "v1", 1);
    push_image(seeder.connector("hosted"), "v2", 2);
    drop(seeder);
    let core = Core::start_in(dir, &config(&data));
    let base = format!("http://{}/berth", core.main);
    let addr = core.connector("hosted").to_owned();
    let alice = basic("alice", "alice-password");
    let b = Browser::start();
    let shots = std::env::var_os("BERTH_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-ui-screenshots"));

    // A reader: the figures, no buttons that would fail.
    b.login(&base, "bob", "bob-password");
    let row = b.text("#repositories");
    assert!(row.contains("hosted") && row.contains("KiB"), "{row}");
    assert_eq!(b.texts("#repositories td.images"), ["1"]);
    b.goto(&format!("{base}/ui/repository?name=hosted"));
    let images = b.text("#images");
    assert!(
        images.contains("app") && images.contains("never"),
        "{images}"
    );
    assert_eq!(tags(&b, &base), ["v1", "v2"]);
    assert!(b.all(".delete-tag").is_empty() && b.all("#history").is_empty());
    b.goto(&format!("{base}/ui/manifest?repo=hosted&image=app&ref=v1"));
    assert!(b.all("#delete-manifest").is_empty());
    b.click("#logout-link");

    // A developer deletes a tag, then points it back from the history.
    b.login(&base, "alice", "alice-password");
    tags(&b, &base);
    b.click(".delete-tag[data-tag=v1]");
    assert!(b.text("#message").contains("tag v1 deleted"));
    assert_eq!(b.texts("a.tag"), ["v2"]);
    assert_eq!(manifest_as(&addr, &alice, "v1").0, 404);
    b.screenshot(&shots, "everyday-1-tag-deleted");
    b.click(".restore-tag[data-tag=v1]");
    assert!(b
        .text("#message")
        .contains(&format!("tag v1 points at {v1} again")));
    assert_eq!(b.texts("a.tag"), ["v1", "v2"]);
    assert_eq!(manifest_as(&addr, &alice, "v1"), (200, v1.clone()));
    b.goto(&format!("{base}/ui/manifest?repo=hosted&image=app&ref=v2"));
    b.click("#delete-manifest");
    assert!(b.text("#message").contains("deleted with its tags"));
    assert_eq!(b.texts("a.tag"), ["v1"]);
    assert_eq!(manifest_as(&addr, &alice, "v2").0, 404);

    // A pull-only token: shown once, works for pulls only, its last use shows, then revoked.
    b.click("#account-link");
    assert!(b.text("#tokens-none").contains("No tokens yet"));
    b.type_into("#token-name", "ci-pull");
    b.click("#create-token");
    let token = b.text("#token");
    b.screenshot(&shots, "everyday-2-token");
    assert!(token.starts_with("berth_"), "{token}");
    let with_token = basic("alice", &token);
    assert_eq!(manifest_as(&addr, &with_token, "v1"), (200, v1.clone()));
    let push = push_blob_as(&addr, "app", "", &with_token, b"not for a pull token");
    assert!(matches!(push.status, 401 | 403), "{}", push.status);
    let mut used = String::new();
    for _ in 0..50 {
        b.goto(&format!("{base}/ui/account"));
        used = b.text("#tokens td.used");
        if used.contains("from 127.0.0.1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(used.contains("from 127.0.0.1"), "last use: {used}");
    b.screenshot(&shots, "everyday-3-account");
    b.click(".revoke[data-token=ci-pull]");
    assert!(b.text("#message").contains("revoked"));
    assert_eq!(manifest_as(&addr, &with_token, "v1").0, 401);

    // A password change: the current one is asked for; every session ends, this one too.
    b.type_into("#current", "not-the-password");
    b.type_into("#new-password", "alice-new-password");
    b.type_into("#confirm", "alice-new-password");
    b.click("#set-password");
    assert!(b.text("#error").contains("current password is not right"));
    b.goto(&format!("{base}/ui/account"));
    b.type_into("#current", "alice-password");
    b.type_into("#new-password", "alice-new-password");
    b.type_into("#confirm", "alice-new-password");
    b.click("#set-password");
    assert!(b.text("#message").contains("Password changed"));
    assert!(b.url().contains("/ui/login"), "{}", b.url());
    b.goto(&format!("{base}/ui/account"));
    assert!(b.text("#error").contains("log in"), "the session ended");
    assert_eq!(manifest_as(&addr, &alice, "v1").0, 401);
    let renewed = basic("alice", "alice-new-password");
    assert_eq!(manifest_as(&addr, &renewed, "v1").0, 200);

    // An admin resets it and reads the overview.
    b.login(&base, "root", "root-password");
    let total = b.text("#total-storage");
    assert!(total.contains("KiB in"), "{total}");
    b.screenshot(&shots, "everyday-4-overview");
    b.click("#nav-admin");
    b.type_into("#password-alice", "alice-reset-password");
    b.click("#reset-alice");
    assert!(b.text("#message").contains("password of alice set"));
    let reset = basic("alice", "alice-reset-password");
    assert_eq!(manifest_as(&addr, &reset, "v1").0, 200);
    assert_eq!(manifest_as(&addr, &renewed, "v1").0, 401);
}
