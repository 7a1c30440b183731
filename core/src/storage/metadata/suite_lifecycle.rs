//! The life-cycle contract: tag history, undo, usage, and the collector's steps — including
//! the locking that makes collection safe while pushes go on. Listed in
//! `metadata_contract!` after the content cases: the collection cases collect whatever else in
//! the store is garbage too, so a run has them last.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::{Cutoffs, Restore};
use super::suite_fixtures::{actor, digest, manifest, ns, place, put, tag};
use super::{now_ms, Actor, MetadataError, MetadataStore, Put};

/// Everything is old enough.
fn all() -> Cutoffs {
    Cutoffs {
        deleted_before: now_ms() + 10_000,
        touched_before: now_ms() + 10_000,
    }
}

async fn collect(s: &dyn MetadataStore, c: Cutoffs) -> (u64, u64, Vec<String>) {
    let (mut manifests, mut links, mut blobs) = (0, 0, Vec::new());
    let mut after = None;
    loop {
        let step = s.gc_expire_manifests(c, after.as_ref(), 2).await.unwrap();
        manifests += step.removed.len() as u64;
        match step.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut after = None;
    loop {
        let step = s.gc_unlink_blobs(c, after.as_ref(), 2).await.unwrap();
        links += step.removed.len() as u64;
        match step.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut after = None;
    loop {
        let (claim, next) = s.gc_claim_blobs(c, after.as_ref(), 2).await.unwrap();
        blobs.extend(claim.blobs().iter().map(|(d, _)| d.to_string()));
        claim.commit().await.unwrap();
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    (manifests, links, blobs)
}

pub async fn history_and_restore(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "history", "app");
    let (one, two) = (manifest("h-one", None), manifest("h-two", None));
    put(s, &a, &one, Some(&tag("v1"))).await;
    put(s, &a, &one, Some(&tag("v1"))).await; // no change, no event
    put(s, &a, &two, Some(&tag("v1"))).await;
    let h = s.tag_history(&a, Some(&tag("v1")), 10).await.unwrap();
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(
        h[0].digest.as_deref(),
        Some(two.digest.to_string().as_str())
    );
    assert_eq!(
        h[0].previous.as_deref(),
        Some(one.digest.to_string().as_str())
    );
    assert_eq!(
        (h[0].actor.as_str(), h[0].reason.as_str()),
        ("tester", "push")
    );
    // A moved tag goes back to what it pointed at.
    let back = s
        .restore(&a, Some(&tag("v1")), None, Actor::new("admin", "restore"))
        .await
        .unwrap();
    assert!(
        matches!(back, Restore::Done { ref digest, manifests: 0, .. } if *digest == one.digest)
    );
    assert_eq!(
        s.tag(&a, &tag("v1")).await.unwrap(),
        Some(one.digest.clone())
    );
    // A deleted manifest comes back with the tags its deletion removed.
    s.delete_manifest(&a, &one.digest, actor())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.tag(&a, &tag("v1")).await.unwrap(), None);
    assert_eq!(s.manifest_media_type(&a, &one.digest).await.unwrap(), None);
    let undone = s
        .restore(&a, None, Some(&one.digest), actor())
        .await
        .unwrap();
    assert_eq!(
        undone,
        Restore::Done {
            digest: one.digest.clone(),
            manifests: 1,
            tags: vec!["v1".into()]
        }
    );
    assert_eq!(
        s.tag(&a, &tag("v1")).await.unwrap(),
        Some(one.digest.clone())
    );
    // A deleted tag comes back; a tag with no earlier state has nothing to restore.
    assert!(s.delete_tag(&a, &tag("v1"), actor()).await.unwrap());
    let again = s
        .restore(&a, Some(&tag("v1")), None, actor())
        .await
        .unwrap();
    assert!(matches!(again, Restore::Done { .. }));
    assert_eq!(
        s.tag(&a, &tag("v1")).await.unwrap(),
        Some(one.digest.clone())
    );
    // Changes faster than the clock ticks keep their order: each undo sees the delete before it.
    for _ in 0..20 {
        assert!(s.delete_tag(&a, &tag("v1"), actor()).await.unwrap());
        let undo = s.restore(&a, Some(&tag("v1")), None, actor()).await;
        assert!(matches!(undo, Ok(Restore::Done { ref digest, .. }) if *digest == one.digest));
    }
    put(s, &a, &two, Some(&tag("fresh"))).await;
    assert_eq!(
        s.restore(&a, Some(&tag("fresh")), None, actor())
            .await
            .unwrap(),
        Restore::NoHistory
    );
    let all = s.tag_history(&a, None, 100).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].at >= w[1].at), "newest first");
}

pub async fn referrers_go_and_come_back_with_their_subject(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "referrers-undo", "app");
    let image = manifest("r-image", None);
    let sig = manifest("r-sig", Some(&image.digest));
    let sbom_sig = manifest("r-sbom-sig", Some(&sig.digest));
    put(s, &a, &image, Some(&tag("v1"))).await;
    put(s, &a, &sig, None).await;
    put(s, &a, &sbom_sig, Some(&tag("sig-tag"))).await;
    let gone = s
        .delete_manifest(&a, &image.digest, actor())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        gone.referrers,
        vec![sig.digest.clone(), sbom_sig.digest.clone()]
    );
    assert_eq!(gone.tags, vec!["sig-tag".to_owned(), "v1".to_owned()]);
    assert_eq!(
        s.manifest_media_type(&a, &sbom_sig.digest).await.unwrap(),
        None
    );
    let back = s
        .restore(&a, Some(&tag("v1")), None, actor())
        .await
        .unwrap();
    assert!(
        matches!(back, Restore::Done { manifests: 3, .. }),
        "{back:?}"
    );
    assert_eq!(s.referrers(&a, &image.digest).await.unwrap().len(), 1);
    assert!(s
        .manifest_media_type(&a, &sbom_sig.digest)
        .await
        .unwrap()
        .is_some());
}

pub async fn pushes_recheck_references(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "recheck", "app");
    let m = manifest("checked", None);
    s.blob_intent(&m.digest).await.unwrap();
    let checked = Put {
        tag: Some(&tag("v1")),
        actor: actor(),
        check_references: true,
    };
    match s.put_manifest(&a, &m, &checked).await {
        Err(MetadataError::Missing(d)) => assert!(m.blobs.contains(&d)),
        other => panic!("a push naming unlinked blobs must fail: {other:?}"),
    }
    assert_eq!(
        s.tag(&a, &tag("v1")).await.unwrap(),
        None,
        "nothing half-done"
    );
    for b in &m.blobs {
        place(s, &a, b, 7).await;
    }
    s.put_manifest(&a, &m, &checked).await.unwrap();
    // Bytes placed without a record (or whose record was collected) are refused.
    let stray = digest("never-announced");
    assert!(matches!(
        s.blob_placed(Some(&a), &stray, 1).await,
        Err(MetadataError::Collected(_))
    ));
    assert!(!s.blob_linked(&a, &stray).await.unwrap());
}

pub async fn usage_counts_shared_blobs_once(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let repo_ns = |i: &str| ns(p, "usage", i);
    let (x, y) = (repo_ns("x"), repo_ns("y"));
    let m = manifest("u", None);
    for n in [&x, &y] {
        for b in &m.blobs {
            place(s, n, b, 1000).await;
        }
        put(s, n, &m, Some(&tag("v1"))).await;
    }
    let u = s.usage(&x.repo).await.unwrap();
    assert_eq!((u.blobs, u.manifests, u.tags), (3, 2, 2), "{u:?}");
    assert_eq!(u.bytes, 2000 + m.size);
    assert_eq!(u.images, 2);
    assert!(u.last_pushed_at.is_some_and(|t| t >= super::now() - 60));
}

/// The first pages' figures: per image its tags, live manifests, bytes, last push.
pub async fn image_summaries_sum_each_image(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let (x, y) = (ns(p, "sum", "x"), ns(p, "sum", "y"));
    let (m1, m2) = (
        manifest(&format!("{p}-s1"), None),
        manifest(&format!("{p}-s2"), None),
    );
    for (n, m, t) in [(&x, &m1, "a"), (&x, &m2, "b"), (&y, &m1, "a")] {
        for b in &m.blobs {
            place(s, n, b, 1000).await;
        }
        put(s, n, m, Some(&tag(t))).await;
    }
    let all = s.image_summaries(&x.repo, "a", "z").await.unwrap();
    let names: Vec<&str> = all.iter().map(|i| i.image.as_str()).collect();
    assert_eq!(
        names,
        ["x", "y"],
        "only images with manifests, in the range"
    );
    assert_eq!((all[0].tags, all[0].manifests), (2, 2));
    assert_eq!(all[0].bytes, 4000 + m1.size + m2.size);
    assert_eq!(
        (all[1].tags, all[1].manifests, all[1].bytes),
        (1, 1, 2000 + m1.size)
    );
    assert!(all[0].pushed_at.is_some() && all[0].pulled_at.is_none());
    let just_y = s.image_summaries(&x.repo, "y", "y").await.unwrap();
    assert_eq!(just_y.len(), 1);
}

pub async fn totals_count_stored_blobs_once(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let before = s.blob_totals().await.unwrap();
    let (x, y) = (ns(p, "totals", "x"), ns(p, "totals", "y"));
    let (one, two) = (
        digest(&format!("{p}-totals-1")),
        digest(&format!("{p}-totals-2")),
    );
    place(s, &x, &one, 500).await;
    place(s, &y, &one, 500).await;
    place(s, &y, &two, 700).await;
    // Announced, never placed: not in the store yet.
    s.blob_intent(&digest(&format!("{p}-totals-3")))
        .await
        .unwrap();
    let after = s.blob_totals().await.unwrap();
    assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1200));
}

pub async fn collection_keeps_what_is_reachable(s: Arc<dyn MetadataStore>, p: &str) {
    let s = s.as_ref();
    let a = ns(p, "gc", "app");
    let kept = manifest("gc-kept", None);
    let dropped = manifest("gc-dropped", None);
    for m in [&kept, &dropped] {
        for b in &m.blobs {
            place(s, &a, b, 100).await;
        }
        put(
            s,
            &a,
            m,
            Some(&tag(if m == &kept { "keep" } else { "drop" })),
        )
        .await;
    }
    let orphan = digest("gc-orphan");
    place(s, &a, &orphan, 50).await;
    s.delete_manifest(&a, &dropped.digest, actor())
        .await
        .unwrap();
    // Nothing is old enough yet: a collection with a past cut-off removes nothing of ours.
    let past = Cutoffs {
        deleted_before: now_ms() - 3_600_000,
        touched_before: now_ms() - 3_600_000,
    };
    let preview = s.gc_preview(past, 100).await.unwrap();
    assert!(!preview.blobs.iter().any(|(d, _)| *d == orphan.to_string()));
    // With everything old enough, the preview names what goes, and the collection does that.
    let preview = s.gc_preview(all(), 10_000).await.unwrap();
    let listed = |d: &str| preview.blobs.iter().any(|(b, _)| b == d);
    assert!(listed(&orphan.to_string()) && listed(&dropped.digest.to_string()));
    assert!(dropped.blobs.iter().all(|b| listed(&b.to_string())));
    assert!(
        !listed(&kept.digest.to_string()) && !kept.blobs.iter().any(|b| listed(&b.to_string()))
    );
    assert!(preview
        .manifests
        .contains(&format!("{}@{}", a.path(), dropped.digest)));
    let (manifests, _links, blobs) = collect(s, all()).await;
    assert!(manifests >= 1);
    for d in std::iter::once(&orphan)
        .chain(&dropped.blobs)
        .chain([&dropped.digest])
    {
        assert!(blobs.contains(&d.to_string()), "{d} should be collected");
    }
    assert!(!blobs.contains(&kept.digest.to_string()));
    assert_eq!(
        s.tag(&a, &tag("keep")).await.unwrap(),
        Some(kept.digest.clone())
    );
    for b in &kept.blobs {
        assert!(s.blob_linked(&a, b).await.unwrap());
    }
    assert!(!s.blob_linked(&a, &orphan).await.unwrap());
    assert_eq!(
        s.restore(&a, None, Some(&dropped.digest), actor())
            .await
            .unwrap(),
        Restore::Collected(dropped.digest.clone()),
        "past the undo window, a restore says it is gone"
    );
    // A second run finds nothing of ours.
    let (_, _, again) = collect(s, all()).await;
    assert!(!again.contains(&kept.digest.to_string()));
    assert!(s
        .gc_preview(all(), 10)
        .await
        .unwrap()
        .blobs
        .iter()
        .all(|(d, _)| *d != orphan.to_string()));
}

/// The race the collector must win: a push of a digest the collector is deleting waits for
/// the claim, then writes a fresh record; a claim dropped without commit gives its records
/// back.
pub async fn a_claim_holds_off_a_push_of_the_same_digest(s: Arc<dyn MetadataStore>, p: &str) {
    let a = ns(p, "claim", "app");
    let d = digest("claimed");
    place(s.as_ref(), &a, &d, 10).await;
    assert!(s.unlink_blob(&a, &d).await.unwrap());
    let (claim, _) = s.gc_claim_blobs(all(), None, 10_000).await.unwrap();
    assert!(claim.blobs().iter().any(|(b, _)| *b == d));
    drop(claim);
    let (claim, _) = s.gc_claim_blobs(all(), None, 10_000).await.unwrap();
    assert!(
        claim.blobs().iter().any(|(b, _)| *b == d),
        "a dropped claim gives the record back"
    );
    let pusher = {
        let (s, a, d) = (s.clone(), a.clone(), d.clone());
        tokio::spawn(async move {
            s.blob_intent(&d).await.unwrap();
            s.blob_placed(Some(&a), &d, 10).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!pusher.is_finished(), "the push waits for the claim");
    claim.commit().await.unwrap();
    pusher.await.unwrap().unwrap();
    assert!(s.blob_linked(&a, &d).await.unwrap());
    let (claim, _) = s
        .gc_claim_blobs(
            Cutoffs {
                deleted_before: 0,
                touched_before: now_ms() - 60_000,
            },
            None,
            10_000,
        )
        .await
        .unwrap();
    assert!(
        !claim.blobs().iter().any(|(b, _)| *b == d),
        "a fresh record is not collected"
    );
    claim.commit().await.unwrap();
}
