//! Config parsing: the documented shape, and errors that name file, key and reason.

use std::path::PathBuf;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, &Source::new("core.yaml", "/etc/berth"))
}

fn write_policy(r: &RepoConfig) -> WritePolicy {
    match r.spec {
        RepoSpec::Hosted { write_policy } => write_policy,
        _ => panic!("not hosted"),
    }
}

const GOOD: &str = "
storage:
  root: ./data
main:
  listen: 127.0.0.1:8081
  context_path: /berth/
repositories:
  - name: docker-hosted
    kind: hosted
    connector:
      http: 127.0.0.1:8082
    write_policy: deny_redeploy
";

#[test]
fn parses_the_documented_shape() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.storage.root, PathBuf::from("/etc/berth/./data"));
    assert_eq!(
        c.storage.metadata,
        crate::storage::metadata::sql::Backend::Sqlite(PathBuf::from(
            "/etc/berth/./data/metadata.db"
        ))
    );
    assert_eq!(c.main.context_path, "/berth");
    assert_eq!(write_policy(&c.repositories[0]), WritePolicy::DenyRedeploy);
    assert!(!c.repositories[0].v1_enabled);
}

#[test]
fn unknown_keys_are_named() {
    let e = parse(&GOOD.replace("write_policy", "write_polcy")).unwrap_err();
    assert_eq!(e.file, "core.yaml");
    assert_eq!(e.key, "repositories[0].write_polcy");
    assert!(e.reason.contains("write_polcy"), "{e}");
}

#[test]
fn bad_values_are_named() {
    let e = parse(&GOOD.replace("127.0.0.1:8082", "nonsense")).unwrap_err();
    assert_eq!(e.key, "repositories[0].connector.http");
    let e = parse(&GOOD.replace("deny_redeploy", "sometimes")).unwrap_err();
    assert_eq!(e.key, "repositories[0].write_policy");
    let e = parse(&GOOD.replace("docker-hosted", "Docker/Hosted")).unwrap_err();
    assert_eq!(e.key, "repositories[0].name");
    let e = parse(&GOOD.replace("/berth/", "berth")).unwrap_err();
    assert_eq!(e.key, "main.context_path");
}

#[test]
fn port_clashes_name_both_sides() {
    let text = format!(
        "{GOOD}  - name: second\n    kind: hosted\n    connector: {{ http: 127.0.0.1:8082 }}\n"
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "repositories[1].connector.http");
    assert!(
        e.reason.contains("second") && e.reason.contains("docker-hosted"),
        "{e}"
    );
    let e = parse(&GOOD.replace("8082", "8081")).unwrap_err();
    assert!(e.reason.contains("main port"), "{e}");
}

#[test]
fn proxies_and_groups() {
    let text = format!(
        "{GOOD}  - name: hub\n    kind: proxy\n    remote: {{ url: https://registry-1.docker.io }}\n    metadata_max_age: 30m\n  - name: all\n    kind: group\n    members: [docker-hosted, hub]\n    writable_member: docker-hosted\n"
    );
    let c = parse(&text).unwrap();
    let RepoSpec::Proxy(p) = &c.repositories[1].spec else {
        panic!("not a proxy")
    };
    assert_eq!(p.metadata_max_age, std::time::Duration::from_secs(1800));
    let RepoSpec::Group(g) = &c.repositories[2].spec else {
        panic!("not a group")
    };
    assert_eq!(g.members.len(), 2);
    let bad = text.replace("writable_member: docker-hosted", "writable_member: hub");
    assert!(parse(&bad).unwrap_err().reason.contains("not a hosted"));
    let missing = text.replace("[docker-hosted, hub]", "[docker-hosted, nope]");
    assert!(parse(&missing)
        .unwrap_err()
        .reason
        .contains("no repository named nope"));
    let no_remote = format!("{GOOD}  - name: hub\n    kind: proxy\n");
    assert_eq!(parse(&no_remote).unwrap_err().key, "repositories[1].remote");
    let bad_age = text.replace("30m", "30 minutes");
    assert_eq!(
        parse(&bad_age).unwrap_err().key,
        "repositories[1].metadata_max_age"
    );
}

#[test]
fn a_missing_member_of_a_nested_group_is_named_not_a_panic() {
    let text = format!(
        "{GOOD}  - {{ name: a, kind: group, members: [b] }}\n  - {{ name: b, kind: group, members: [nope] }}\n"
    );
    let e = parse(&text).unwrap_err();
    assert!(e.reason.contains("no repository named nope"), "{e}");
}

#[test]
fn keys_of_another_kind_are_refused() {
    let text = format!("{GOOD}  - {{ name: h, kind: hosted, members: [docker-hosted] }}\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "repositories[1].members");
    let text = format!("{GOOD}  - {{ name: p, kind: proxy, remote: {{ url: http://x.example, idle_timeout: soon }} }}\n");
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "repositories[1].remote.idle_timeout");
}

#[test]
fn group_cycles_are_rejected() {
    let text = format!(
        "{GOOD}  - {{ name: a, kind: group, members: [b] }}\n  - {{ name: b, kind: group, members: [docker-hosted, a] }}\n"
    );
    let e = parse(&text).unwrap_err();
    assert!(
        e.reason.contains("cycle") && e.reason.contains("a -> b -> a"),
        "{e}"
    );
}

#[test]
fn duplicate_names_are_rejected() {
    let text = format!("{GOOD}  - name: docker-hosted\n    kind: hosted\n");
    let e = parse(&text).unwrap_err();
    assert!(e.reason.contains("already used"), "{e}");
}

#[test]
fn lifecycle_keys_parse_and_bad_ones_name_the_key() {
    let base = "storage: { root: /d }\nmain: { listen: 127.0.0.1:8081 }\n";
    let c = parse(&format!(
        "{base}gc: {{ interval: 0s, grace: 10m, undo_window: 2d }}\nrepositories:\n  - name: h\n    kind: hosted\n    quota: 10GiB\n    immutable_tags: ['^v']\n    cleanup:\n      - {{ name: builds, tags: '^b-', keep_last: 3, older_than: 30d }}\n"
    ))
    .unwrap();
    assert_eq!(c.gc.interval, None);
    assert_eq!(c.gc.grace, std::time::Duration::from_secs(600));
    let l = &c.repositories[0].lifecycle;
    assert_eq!(l.quota, Some(10 << 30));
    assert!(l.immutable("v1").is_some() && l.immutable("latest").is_none());
    assert_eq!(l.cleanup[0].keep_last, Some(3));
    for (yaml, key, reason) in [
        (
            "cleanup: [{ name: all }]",
            "repositories[0].cleanup[0].name",
            "no criterion",
        ),
        (
            "cleanup: [{ name: x, tags: '(', keep_last: 1 }]",
            "repositories[0].cleanup[0].tags",
            "not a regex",
        ),
        ("quota: 10 parsecs", "repositories[0].quota", "unknown unit"),
        (
            "cache: { max_age: 1d }",
            "repositories[0].cache",
            "only proxy",
        ),
    ] {
        let e = parse(&format!(
            "{base}repositories:\n  - {{ name: h, kind: hosted, {} }}\n",
            yaml.trim_start_matches('{')
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(key) && e.contains(reason) && e.contains("core.yaml"),
            "{yaml}: {e}"
        );
    }
    let e = parse(&format!(
        "{base}gc: {{ undo_window: 30d, history_retention: 7d }}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("gc.history_retention"), "{e}");
}

#[test]
fn a_webhook_url_with_credentials_is_refused_naming_its_key() {
    let text = format!(
        "{GOOD}notifications:\n  endpoints:\n    - {{ name: hook, url: \"https://bob:s3cret@hooks.example/x\" }}\n"
    );
    let e = parse(&text).unwrap_err();
    assert_eq!(e.key, "notifications.endpoints[0].url");
    assert!(!e.to_string().contains("s3cret"), "{e}");
    let fine = format!(
        "{GOOD}notifications:\n  endpoints:\n    - {{ name: hook, url: \"https://hooks.example/x\" }}\n"
    );
    parse(&fine).unwrap();
}
