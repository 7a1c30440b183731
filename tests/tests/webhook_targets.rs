//! Webhooks are requests the core makes from inside the network, so they are not sent to
//! loopback, private or link-local addresses (the cloud metadata address, the core's own admin
//! port) unless the operator allows it: an address in the URL is a config error naming the key;
//! a host name that resolves only to such addresses is refused at delivery, every time (DNS
//! rebinding), and the event waits as for an endpoint that is down.

#![allow(clippy::unwrap_used)]

use std::net::ToSocketAddrs;
use std::process::Output;
use std::time::Duration;

use berth_tests::core::Core;
use berth_tests::edge::free_port;
use berth_tests::registry::push_blob;
use berth_tests::webhook::{received, Receiver};

fn check(dir: &std::path::Path, endpoints: &str) -> Output {
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:8081, context_path: /berth }}\n\
         notifications:\n{endpoints}",
        dir.join("data").display()
    );
    let path = dir.join("core.yaml");
    std::fs::write(&path, config).unwrap();
    berth_tests::core::check_config(&path)
}

#[test]
fn private_webhook_addresses_are_a_config_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8081/berth/api/v1/users",
        "http://localhost:8081/berth/api/v1/gc",
        "http://10.0.0.7/hook",
        "http://[fd00::7]/hook",
    ] {
        let out = check(
            dir.path(),
            &format!("  endpoints:\n    - {{ name: h, url: \"{url}\" }}\n"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} was accepted");
        assert!(
            err.contains("notifications.endpoints[0].url") && err.contains("allow_private_targets"),
            "{url}: {err}"
        );
    }
    let allowed = check(
        dir.path(),
        "  allow_private_targets: true\n  endpoints:\n    - { name: h, url: \"http://127.0.0.1:9/hook\" }\n",
    );
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let public = check(
        dir.path(),
        "  endpoints:\n    - { name: h, url: \"https://hooks.example.com/registry\" }\n",
    );
    assert!(public.status.success());
}

/// This machine's name, if it resolves to loopback only (it does on most hosts, through
/// /etc/hosts): a name the URL check cannot see through, as a rebinding domain would be.
fn loopback_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim().to_owned();
    let addrs: Vec<_> = (name.as_str(), 80).to_socket_addrs().ok()?.collect();
    (!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())).then_some(name)
}

#[test]
fn a_name_that_resolves_to_loopback_is_refused_at_delivery() {
    let Some(name) = loopback_name() else {
        panic!("this test needs the host name to resolve to loopback (see /etc/hosts)");
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("events.jsonl");
    let port = free_port();
    let _receiver = Receiver::start(dir.path(), port, &out);
    let endpoint = |allow: bool| {
        format!(
            "notifications:\n  allow_private_targets: {allow}\n  endpoints:\n    \
             - {{ name: hooks, url: 'http://{name}:{port}/events', backoff: 100ms, max_backoff: 200ms }}\n"
        )
    };
    let config = |allow: bool, data: &std::path::Path| {
        format!(
            "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
             repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n{}",
            data.display(),
            endpoint(allow)
        )
    };
    let refused_dir = tempfile::tempdir().unwrap();
    let refused = Core::start_in(
        tempfile::tempdir().unwrap(),
        &config(false, &refused_dir.path().join("data")),
    );
    assert_eq!(
        push_blob(refused.connector("hosted"), "app", b"layer")
            .unwrap()
            .status,
        201
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        received(&out, "/events").is_empty(),
        "an event reached a loopback name"
    );
    assert!(
        refused.log().contains("resolves only to private addresses"),
        "{}",
        refused.log()
    );
    drop(refused);

    // The operator's word lets the same name through: the check above could fail.
    let allowed_dir = tempfile::tempdir().unwrap();
    let allowed = Core::start_in(
        tempfile::tempdir().unwrap(),
        &config(true, &allowed_dir.path().join("data")),
    );
    assert_eq!(
        push_blob(allowed.connector("hosted"), "app", b"layer")
            .unwrap()
            .status,
        201
    );
    for _ in 0..100 {
        if !received(&out, "/events").is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("with allow_private_targets the event never arrived");
}
