//! The contract's cluster cases: what several cores on one store agree on.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use super::cluster::{CleanupRun, GcRun, KeyRecord, KeySlot};
use super::{now_ms, MetadataStore};

fn key(kid: &str) -> KeyRecord {
    KeyRecord {
        kid: kid.to_owned(),
        secret: Some(format!("{kid}-secret")),
        created_at: now_ms(),
        retired_at: None,
    }
}

/// Racing cores agree on one key; a rotation keeps the one before as `previous`.
pub async fn signing_keys_are_one_and_rotate(s: Arc<dyn MetadataStore>, p: &str) {
    let (a, b) = (key(&format!("{p}-a")), key(&format!("{p}-b")));
    let (sa, sb) = (s.clone(), s.clone());
    let (ka, kb) = tokio::join!(
        async move { sa.signing_key_init(&a).await.unwrap() },
        async move { sb.signing_key_init(&b).await.unwrap() }
    );
    assert_eq!(ka, kb, "both cores got the same key");
    assert_eq!(
        s.signing_key(KeySlot::Current).await.unwrap(),
        Some(ka.clone())
    );
    let next = key(&format!("{p}-next"));
    s.signing_key_rotate(&next).await.unwrap();
    assert_eq!(s.signing_key(KeySlot::Current).await.unwrap(), Some(next));
    let previous = s.signing_key(KeySlot::Previous).await.unwrap().unwrap();
    assert_eq!(previous.kid, ka.kid);
    assert!(previous.retired_at.is_some());
    // A key file's fingerprint: no secret.
    let file = KeyRecord {
        secret: None,
        ..key(&format!("{p}-file"))
    };
    let before = s.settings_version().await.unwrap();
    s.signing_key_rotate(&file).await.unwrap();
    assert!(s.settings_version().await.unwrap() > before, "cores notice");
    assert_eq!(s.signing_key(KeySlot::Current).await.unwrap(), Some(file));
    assert_eq!(
        s.signing_key(KeySlot::Previous).await.unwrap().unwrap().kid,
        format!("{p}-next")
    );
}

/// A lease has one holder until it expires; its holder renews it; a released one is free.
pub async fn leases_have_one_holder(s: Arc<dyn MetadataStore>, p: &str) {
    let name = format!("{p}-lease");
    let (a, b) = (format!("{p}-a"), format!("{p}-b"));
    let now = now_ms();
    assert!(s.lease_take(&name, &a, now, now + 1_000).await.unwrap());
    assert!(!s.lease_take(&name, &b, now, now + 1_000).await.unwrap());
    assert!(
        s.lease_take(&name, &a, now + 500, now + 2_000)
            .await
            .unwrap(),
        "renewed"
    );
    assert_eq!(
        s.lease_holder(&name, now + 1_500).await.unwrap(),
        Some(a.clone())
    );
    assert!(!s
        .lease_take(&name, &b, now + 1_500, now + 3_000)
        .await
        .unwrap());
    // Expired: the next taker gets it, and the old holder cannot renew.
    assert!(s
        .lease_take(&name, &b, now + 2_000, now + 3_000)
        .await
        .unwrap());
    assert!(!s
        .lease_take(&name, &a, now + 2_100, now + 4_000)
        .await
        .unwrap());
    s.lease_release(&name, &a).await.unwrap();
    assert_eq!(
        s.lease_holder(&name, now + 2_100).await.unwrap(),
        Some(b.clone()),
        "only the holder releases"
    );
    s.lease_release(&name, &b).await.unwrap();
    assert_eq!(s.lease_holder(&name, now + 2_100).await.unwrap(), None);
    assert!(s
        .lease_take(&name, &a, now + 2_200, now + 3_000)
        .await
        .unwrap());
}

/// Runs of every core, newest first, the oldest dropped past `keep`.
pub async fn gc_runs_of_every_core(s: Arc<dyn MetadataStore>, p: &str) {
    // Far in the future, so these are the newest whatever else the store holds.
    let base = 4_000_000_000 + i64::from(p.len() as u32);
    for (i, scheduled) in [(0, true), (1, false), (2, true), (3, false)] {
        let run = GcRun {
            id: format!("{p}-{i}"),
            core: format!("{p}-core{}", i % 2),
            scheduled,
            started_at: base + i,
            report: format!("{{\"n\":{i}}}"),
        };
        s.gc_run_record(&run, 3).await.unwrap();
    }
    let runs = s.gc_runs(10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [format!("{p}-3"), format!("{p}-2"), format!("{p}-1")],
        "newest first, three kept"
    );
    assert_eq!(runs[0].core, format!("{p}-core1"));
    assert!(runs[1].scheduled && !runs[0].scheduled);
    assert_eq!(s.gc_last_scheduled().await.unwrap(), Some(base + 2));
}

/// A token's last use, a directory user's last login and a repository's last cleanup run are
/// one row each, whichever core wrote them last.
pub async fn uses_and_cleanup_runs_are_the_latest(s: Arc<dyn MetadataStore>, p: &str) {
    let id = format!("{p}-token");
    s.token_used(&id, 1_000, "10.0.0.1").await.unwrap();
    s.token_used(&id, 2_000, "10.0.0.2").await.unwrap();
    let uses = s.token_uses().await.unwrap();
    let u = uses.get(&id).unwrap();
    assert_eq!((u.at, u.from.as_str()), (2_000, "10.0.0.2"));
    s.token_use_forget(&id).await.unwrap();
    assert!(!s.token_uses().await.unwrap().contains_key(&id));

    // A directory user's last login replaces the one before, roles included.
    let user = format!("{p}-ldap-user");
    for (at, roles) in [(1_000, vec!["devs".to_owned()]), (2_000, vec![])] {
        let login = crate::storage::metadata::sessions::DirectoryLogin {
            user: user.clone(),
            source: "ldap".into(),
            roles,
            at,
            from: "10.0.0.3".into(),
        };
        s.directory_login(&login).await.unwrap();
    }
    let logins = s.directory_logins().await.unwrap();
    let mine: Vec<_> = logins.iter().filter(|l| l.user == user).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].at, mine[0].roles.len()), (2_000, 0));

    let repo = format!("{p}-repo");
    for (core, at) in [("core-a", 1), ("core-b", 2)] {
        let run = CleanupRun {
            repo: repo.clone(),
            core: core.into(),
            at,
            report: format!("{{\"at\":{at}}}"),
        };
        s.cleanup_run_record(&run).await.unwrap();
    }
    let runs = s.cleanup_runs(Some(&repo)).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].core.as_str(), runs[0].at), ("core-b", 2));
    let all = s.cleanup_runs(None).await.unwrap();
    assert!(all.iter().any(|r| r.repo == repo));
}
