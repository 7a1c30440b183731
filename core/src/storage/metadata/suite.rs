//! The MetadataStore contract: what every backend (SQLite, PostgreSQL, later others) must do,
//! including under concurrency. Public behind the `contract-suite` feature so each backend's
//! tests — in this crate or elsewhere — run exactly these cases.
//!
//! Every case works in namespaces of its own (`<prefix>-<case>`), so one database can hold
//! several runs.

// The suite panics on purpose when a backend breaks the contract.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::suite_fixtures::{actor, digest, manifest, ns, place, put, tag};
use super::{now_ms, Actor, Deleted, MetadataStore, Page, UploadRecord};
use crate::storage::Namespace;

/// The contract's cases, listed once: `metadata_contract!(run)` defines [`run`] (every case in
/// turn), and a backend's test file writes
/// `berth_core::metadata_contract!(tests |case| open(case).await);` to get one `#[tokio::test]`
/// per case — named after it, so a failure names the case and the file names the backend —
/// each on a fresh store from the expression, which gives `(keep, store)`: `keep` (a temporary
/// directory, a server) lives as long as the case, and `case` is the case's name (e.g. for a
/// database of its own: the collection cases sweep the whole store).
#[macro_export]
macro_rules! metadata_contract {
    (@with [run] $($m:ident :: $case:ident),*) => {
        /// Runs every case against `store`, one after another; `prefix` keeps this run's
        /// namespaces apart.
        pub async fn run(store: Arc<dyn MetadataStore>, prefix: &str) {
            $( $crate::storage::metadata::$m::$case(store.clone(), prefix).await; )*
        }
    };
    (@with [tests |$name:ident| $open:expr] $($m:ident :: $case:ident),*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let $name: &str = stringify!($case);
            let _ = $name;
            let (_keep, store): (_, ::std::sync::Arc<dyn $crate::storage::metadata::MetadataStore>) =
                $open;
            $crate::storage::metadata::$m::$case(store, $name).await;
        }
    )*};
    ($($how:tt)*) => {
        $crate::metadata_contract!(@with [$($how)*]
            suite::blob_links,
            suite::manifests_tags_and_referrers,
            suite::listings_page_in_the_store,
            suite::uploads,
            suite::concurrent_pushes_of_one_tag,
            suite::concurrent_pushes_of_many_images,
            suite::close_racing_progress,
            suite::settings,
            suite::sessions,
            suite_cluster::signing_keys_are_one_and_rotate,
            suite_cluster::leases_have_one_holder,
            suite_cluster::gc_runs_of_every_core,
            suite_cluster::uses_and_cleanup_runs_are_the_latest,
            // Last in a run: they collect whatever else in the store is garbage too.
            suite_lifecycle::history_and_restore,
            suite_lifecycle::referrers_go_and_come_back_with_their_subject,
            suite_lifecycle::pushes_recheck_references,
            suite_lifecycle::usage_counts_shared_blobs_once,
            suite_lifecycle::image_summaries_sum_each_image,
            suite_lifecycle::totals_count_stored_blobs_once,
            suite_lifecycle::collection_keeps_what_is_reachable,
            suite_lifecycle::a_claim_holds_off_a_push_of_the_same_digest);
    };
}

metadata_contract!(run);

pub async fn blob_links(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "links", "app");
    let b = ns(p, "links", "other");
    let d = digest("blob");
    assert!(!s.blob_linked(&a, &d).await.unwrap());
    assert_eq!(
        s.tags(&a, &Page::all()).await.unwrap(),
        None,
        "nothing there yet"
    );
    assert!(
        !s.link_blob(&a, &d).await.unwrap(),
        "no stored blob to mount"
    );
    place(s, &a, &d, 10).await;
    place(s, &a, &d, 10).await;
    assert!(s.link_blob(&b, &d).await.unwrap(), "a stored blob mounts");
    assert!(s.unlink_blob(&b, &d).await.unwrap());
    assert!(s.blob_linked(&a, &d).await.unwrap());
    assert!(!s.blob_linked(&b, &d).await.unwrap(), "links are per image");
    assert_eq!(
        s.tags(&a, &Page::all()).await.unwrap(),
        Some(vec![]),
        "an image with a blob exists, without tags"
    );
    assert!(s.unlink_blob(&a, &d).await.unwrap());
    assert!(!s.unlink_blob(&a, &d).await.unwrap());
    assert!(!s.blob_linked(&a, &d).await.unwrap());
}

pub async fn manifests_tags_and_referrers(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "manifests", "team/app");
    let image = manifest("image", None);
    put(s, &a, &image, Some(&tag("v1"))).await;
    assert_eq!(
        s.manifest_media_type(&a, &image.digest)
            .await
            .unwrap()
            .as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(
        s.tag(&a, &tag("v1")).await.unwrap(),
        Some(image.digest.clone())
    );
    assert_eq!(s.tag(&a, &tag("nope")).await.unwrap(), None);
    assert_eq!(
        s.tagged_manifest(&a, &tag("v1")).await.unwrap(),
        Some((image.digest.clone(), image.media_type.clone()))
    );
    assert_eq!(s.tagged_manifest(&a, &tag("nope")).await.unwrap(), None);
    // Pushing again (a second tag) is idempotent for the manifest.
    put(s, &a, &image, Some(&tag("latest"))).await;
    let sig = manifest("signature", Some(&image.digest));
    put(s, &a, &sig, None).await;
    let refs = s.referrers(&a, &image.digest).await.unwrap();
    assert_eq!(refs, vec![sig.descriptor()]);
    assert!(s
        .referrers(&ns(p, "manifests", "elsewhere"), &image.digest)
        .await
        .unwrap()
        .is_empty());
    // Deleting the signature returns its subject; deleting the image, its tags.
    assert_eq!(
        s.delete_manifest(&a, &sig.digest, actor()).await.unwrap(),
        Some(Deleted {
            tags: vec![],
            referrers: vec![],
            subject: Some(image.digest.clone())
        })
    );
    assert!(s.referrers(&a, &image.digest).await.unwrap().is_empty());
    assert_eq!(
        s.delete_manifest(&a, &image.digest, actor()).await.unwrap(),
        Some(Deleted {
            tags: vec!["latest".into(), "v1".into()],
            referrers: vec![],
            subject: None
        })
    );
    assert_eq!(
        s.delete_manifest(&a, &image.digest, actor()).await.unwrap(),
        None
    );
    assert_eq!(s.tag(&a, &tag("v1")).await.unwrap(), None);
    assert_eq!(
        s.manifest_media_type(&a, &image.digest).await.unwrap(),
        None
    );
    // A tag alone can go, leaving its manifest.
    put(s, &a, &image, Some(&tag("v2"))).await;
    assert!(s.delete_tag(&a, &tag("v2"), actor()).await.unwrap());
    assert!(!s.delete_tag(&a, &tag("v2"), actor()).await.unwrap());
    assert!(s
        .manifest_media_type(&a, &image.digest)
        .await
        .unwrap()
        .is_some());
}

pub async fn listings_page_in_the_store(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let repo = ns(p, "listing", "x").repo;
    let m = manifest("listed", None);
    // Names chosen so byte order differs from case-insensitive or locale orders.
    for image in ["b", "a/z", "a", "B-not-valid-upper"]
        .iter()
        .filter(|i| i.parse::<crate::oci::ImageName>().is_ok())
    {
        let n = Namespace::new(repo.clone(), image.parse().unwrap());
        for t in ["v10", "v2", "latest", "V1", "_x"] {
            put(s, &n, &m, Some(&tag(t))).await;
        }
    }
    let n = Namespace::new(repo.clone(), "a".parse().unwrap());
    let all = s.tags(&n, &Page::all()).await.unwrap().unwrap();
    assert_eq!(all, vec!["V1", "_x", "latest", "v10", "v2"], "byte order");
    let first = s
        .tags(
            &n,
            &Page {
                after: None,
                limit: Some(2),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, vec!["V1", "_x"]);
    let next = s
        .tags(
            &n,
            &Page {
                after: Some("_x".into()),
                limit: Some(2),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next, vec!["latest", "v10"]);
    let images: Vec<String> = s
        .images(&repo, &Page::all())
        .await
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(images, vec!["a", "a/z", "b"]);
    let after_a = s
        .images(
            &repo,
            &Page {
                after: Some("a".into()),
                limit: Some(1),
            },
        )
        .await
        .unwrap();
    assert_eq!(after_a[0].as_str(), "a/z");
}

pub async fn uploads(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "uploads", "app");
    let u = UploadRecord {
        id: format!("{p}-session-1"),
        namespace: a.clone(),
        client: "alice".into(),
        size: 0,
        updated_at: now_ms(),
        started: false,
    };
    s.upload_open(&u).await.unwrap();
    assert_eq!(s.upload(&u.id).await.unwrap().as_ref(), Some(&u));
    // An append beginning makes it started (even within the millisecond it was opened).
    s.upload_touch(&u.id).await.unwrap();
    let touched = s.upload(&u.id).await.unwrap().unwrap();
    assert!(
        touched.started && touched.updated_at > u.updated_at,
        "{touched:?}"
    );
    s.upload_progress(&u.id, 4096).await.unwrap();
    let got = s.upload(&u.id).await.unwrap().unwrap();
    assert_eq!((got.size, got.client.as_str()), (4096, "alice"));
    let listed = s.uploads(Some(&a.repo)).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(s.uploads(None).await.unwrap().iter().any(|x| x.id == u.id));
    assert!(s.upload_close(&u.id).await.unwrap());
    assert!(!s.upload_close(&u.id).await.unwrap());
    assert_eq!(s.upload(&u.id).await.unwrap(), None);
}

/// Two (here: eight) pushes of one tag at once: every push succeeds, and the tag ends on one
/// of the pushed manifests, which is there.
pub async fn concurrent_pushes_of_one_tag(s: Arc<dyn MetadataStore>, p: &str) {
    let a = ns(p, "race", "app");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (s, a) = (s.clone(), a.clone());
        tasks.push(tokio::spawn(async move {
            let m = manifest(&format!("racer-{i}"), None);
            put(s.as_ref(), &a, &m, Some(&tag("latest"))).await;
            m.digest
        }));
    }
    let mut pushed = Vec::new();
    for t in tasks {
        pushed.push(t.await.unwrap());
    }
    let winner = s.tag(&a, &tag("latest")).await.unwrap().unwrap();
    assert!(pushed.contains(&winner));
    for d in &pushed {
        assert!(s.manifest_media_type(&a, d).await.unwrap().is_some());
    }
}

pub async fn concurrent_pushes_of_many_images(s: Arc<dyn MetadataStore>, p: &str) {
    let repo = ns(p, "many", "x").repo;
    let mut tasks = Vec::new();
    for i in 0..32 {
        let (s, repo) = (s.clone(), repo.clone());
        tasks.push(tokio::spawn(async move {
            let n = Namespace::new(repo, format!("img{i:02}").parse().unwrap());
            place(s.as_ref(), &n, &digest("shared"), 10).await;
            put(s.as_ref(), &n, &manifest("m", None), Some(&tag("v1"))).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.images(&repo, &Page::all()).await.unwrap().len(), 32);
}

/// Closing a session while progress is recorded: exactly one close wins, nothing errors.
pub async fn close_racing_progress(s: Arc<dyn MetadataStore>, p: &str) {
    let a = ns(p, "close", "app");
    let id = format!("{p}-session-race");
    s.upload_open(&UploadRecord {
        id: id.clone(),
        namespace: a,
        client: "bob".into(),
        size: 0,
        updated_at: now_ms(),
        started: false,
    })
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..4u64 {
        let (s, id) = (s.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            s.upload_progress(&id, i * 10).await.unwrap();
            s.upload_close(&id).await.unwrap()
        }));
    }
    let mut closed = 0;
    for t in tasks {
        closed += usize::from(t.await.unwrap());
    }
    assert_eq!(closed, 1);
    assert_eq!(s.upload(&id).await.unwrap(), None);
}

/// Settings: written, overwritten, tombstoned, forgotten, each bumping the version; retiring a
/// repository trashes its manifests and its tags (with history), restorable.
pub async fn settings(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    use super::settings::SettingKind::{Repository, User};
    let name = format!("{p}repo");
    let v0 = s.settings_version().await.unwrap();
    s.put_setting(Repository, &name, Some("{\"kind\":\"hosted\"}"), "root")
        .await
        .unwrap();
    let v1 = s.settings_version().await.unwrap();
    assert!(v1 > v0, "a write bumps the version");
    s.put_setting(Repository, &name, None, "admin")
        .await
        .unwrap();
    let rows = s.settings(Repository).await.unwrap();
    let row = rows.iter().find(|r| r.name == name).unwrap();
    assert_eq!((row.body.as_deref(), row.actor.as_str()), (None, "admin"));
    assert!(
        !s.settings(User)
            .await
            .unwrap()
            .iter()
            .any(|r| r.name == name),
        "kinds apart"
    );
    assert!(s.remove_setting(Repository, &name).await.unwrap());
    assert!(!s.remove_setting(Repository, &name).await.unwrap());
    assert!(s.settings_version().await.unwrap() > v1);
    assert!(!s
        .settings(Repository)
        .await
        .unwrap()
        .iter()
        .any(|r| r.name == name));

    let n = ns(p, "retire", "app");
    let m = manifest("retired", None);
    put(s, &n, &m, Some(&tag("v1"))).await;
    let trashed = s
        .retire_repository(&n.repo, Actor::new("root", "repository deleted"))
        .await
        .unwrap();
    assert_eq!(trashed, 1);
    assert_eq!(s.tag(&n, &tag("v1")).await.unwrap(), None);
    assert_eq!(s.manifest_media_type(&n, &m.digest).await.unwrap(), None);
    let history = s.tag_history(&n, Some(&tag("v1")), 10).await.unwrap();
    assert_eq!(history[0].reason, "repository deleted");
}

/// Sessions: found by id until closed; ended per user; pruned once expired.
pub async fn sessions(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    use super::sessions::SessionRecord;
    let now = now_ms();
    let record = |id: &str, user: &str, expires_at: i64| SessionRecord {
        id: format!("{p}-{id}"),
        user: format!("{p}-{user}"),
        stamp: "stamp".into(),
        created_at: now,
        expires_at,
        roles: None,
    };
    // bob is a directory user: his session keeps the roles of his login.
    let (a1, a2, b, old) = (
        record("a1", "alice", now + 60_000),
        record("a2", "alice", now + 60_000),
        SessionRecord {
            roles: Some(vec!["devs".into()]),
            ..record("b", "bob", now + 60_000)
        },
        record("old", "carol", now - 1),
    );
    for r in [&a1, &a2, &b, &old] {
        s.session_open(r).await.unwrap();
    }
    assert_eq!(s.session(&a1.id).await.unwrap(), Some(a1.clone()));
    assert_eq!(s.session(&format!("{p}-none")).await.unwrap(), None);
    assert!(s.session_close(&a1.id).await.unwrap());
    assert!(!s.session_close(&a1.id).await.unwrap());
    assert_eq!(s.session(&a1.id).await.unwrap(), None);
    assert_eq!(s.sessions_end(&a2.user).await.unwrap(), 1);
    assert_eq!(s.session(&a2.id).await.unwrap(), None);
    assert_eq!(
        s.session(&b.id).await.unwrap(),
        Some(b.clone()),
        "others stay"
    );
    assert!(s.sessions_prune(now).await.unwrap() >= 1);
    assert_eq!(s.session(&old.id).await.unwrap(), None, "expired: pruned");
    assert!(s.session(&b.id).await.unwrap().is_some());
}
