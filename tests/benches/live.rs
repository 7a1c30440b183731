//! What live settings cost on the request path, in one run: manifest GETs on a connector
//! (which resolves its repository per request from a swappable map) for this build and, with
//! `BERTH_REFERENCE_CORE=/path/to/berth-core` (e.g. built from the commit before), for a
//! reference build; then, with access control on and for both builds, the CPU per request of
//! each credential kind — Basic with a (remembered) password or an API token, and the registry
//! tokens each gets from the realm (checked on use against the token's API token or the
//! password it was issued under) — and the CPU of a *first* login by each: argon2 for a
//! password, one SHA-256 for a token; then the cost of events: the same GETs (each a pull
//! event) on a core without and one with a webhook endpoint (nginx answering 200: a receiver
//! that keeps up, so batching shows), alternating, with what the endpoint received.
//! Wall-clock figures swing on this 2-core machine; CPU per request holds steadier. Build
//! first: `cargo build --release --workspace`, then `cargo bench -p berth-tests --bench live`.

use std::path::PathBuf;

use base64::Engine as _;
use serde_json::json;

use berth_tests::bench::{print_table, wrk, wrk_with, Nginx};
use berth_tests::core::{secured_config, Core};
use berth_tests::http::{self, request};
use berth_tests::proc::cpu_seconds;
use berth_tests::prometheus::{sample, scrape};
use berth_tests::registry::{oci_manifest, OCI_MANIFEST};

/// First logins measured per kind.
const FIRST_LOGINS: usize = 20;

fn open_config(data: &std::path::Path) -> String {
    format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data.display()
    )
}

/// Pushes `app:v1` (with `auth` if given).
fn push(addr: &str, auth: Option<&str>) {
    let config = b"{\"bench\":true}".to_vec();
    let layer = vec![7u8; 4096];
    let mut headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
    for b in [&config, &layer] {
        let path = format!("/v2/app/blobs/uploads/?digest={}", http::digest(b));
        assert_eq!(
            request(addr, "POST", &path, &headers, b).unwrap().status,
            201
        );
    }
    headers.push(("Content-Type", OCI_MANIFEST));
    let m = oci_manifest(&config, &[&layer]);
    let r = request(addr, "PUT", "/v2/app/manifests/v1", &headers, &m).unwrap();
    assert_eq!(r.status, 201);
}

/// Requests/s and CPU µs per request of the core for manifest GETs with `headers`.
fn gets(core: &Core, headers: &[String]) -> (f64, f64) {
    let pid = core.pid().expect("running");
    let url = format!("http://{}/v2/app/manifests/v1", core.connector("hosted"));
    let mut h = vec![format!("Accept: {OCI_MANIFEST}")];
    h.extend_from_slice(headers);
    let before = cpu_seconds(pid);
    let w = if headers.is_empty() {
        wrk(&url, OCI_MANIFEST)
    } else {
        wrk_with(&url, &h)
    };
    let cpu = cpu_seconds(pid) - before;
    (w.rps, cpu / w.requests * 1e6)
}

fn basic(user: &str, pass: &str) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

/// CPU ms per first login of `n` credentials, each used once against the connector.
fn first_logins(core: &Core, creds: &[String]) -> f64 {
    let pid = core.pid().expect("running");
    let addr = core.connector("hosted");
    let before = cpu_seconds(pid);
    for c in creds {
        let r = request(
            addr,
            "GET",
            "/v2/app/manifests/v1",
            &[("Authorization", c), ("Accept", OCI_MANIFEST)],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }
    (cpu_seconds(pid) - before) / creds.len() as f64 * 1e3
}

/// A core with `extra` config (from `binary`, or this build's), its hosted repository pushed.
fn events_core(binary: Option<PathBuf>, extra: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "{}metrics: {{ listen: 127.0.0.1:0 }}\n{extra}",
        open_config(&data)
    );
    let core = match binary {
        Some(b) => Core::start_binary(b, dir, &config),
        None => Core::start_in(dir, &config),
    };
    push(core.connector("hosted"), None);
    core
}

/// Manifest GETs on a core without events and one POSTing every pull to a webhook (and, with
/// `BERTH_REFERENCE_CORE`, a reference build's core with the same webhook), two alternating
/// rounds each; prints requests/s, the core's CPU per request, and per events-on core what
/// the webhook received and in how many POSTs.
fn events_overhead() {
    let receiver = Nginx::sink();
    let port = receiver.port;
    let hooks = |path: &str| {
        format!("notifications:\n  allow_private_targets: true\n  endpoints:\n    - {{ name: hooks, url: 'http://127.0.0.1:{port}/{path}', queue: 100000 }}\n")
    };
    let mut columns = vec!["events off", "events on"];
    let mut cores = vec![events_core(None, ""), events_core(None, &hooks("this"))];
    if let Some(reference) = std::env::var_os("BERTH_REFERENCE_CORE").map(PathBuf::from) {
        columns.push("on, reference");
        cores.push(events_core(Some(reference), &hooks("reference")));
    }
    let (mut rps, mut cpu) = (vec![0.0; cores.len()], vec![0.0; cores.len()]);
    let receiver_cpu = || receiver.pids().iter().map(|p| cpu_seconds(*p)).sum::<f64>();
    let receiver_before = receiver_cpu();
    for round in 0..2 {
        for (i, core) in cores.iter().enumerate() {
            eprintln!("{} round {round}...", columns[i]);
            let (r, c) = gets(core, &[]);
            rps[i] += r / 2.0;
            cpu[i] += c / 2.0;
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(3));
    let receiver_used = receiver_cpu() - receiver_before;
    print_table(
        &columns,
        &[
            ("manifest GET: requests/s", rps),
            ("manifest GET: core CPU us/request", cpu),
        ],
    );
    let log = receiver.access_log();
    let mut all = 0.0;
    for (core, path) in cores[1..].iter().zip(["this", "reference"]) {
        let text = scrape(core.metrics.as_deref().unwrap());
        let count = |result: &str| {
            let series = format!(
                "berth_notification_events_total{{endpoint=\"hooks\",result=\"{result}\"}}"
            );
            sample(&text, &series)
        };
        let posts = log
            .lines()
            .filter(|l| l.contains(&format!(" /{path} ")))
            .count();
        println!(
            "{path}: {} events delivered in {posts} POSTs, {} dropped",
            count("delivered"),
            count("dropped")
        );
        all += count("delivered");
    }
    println!(
        "the receiver's CPU: {:.1} us/event",
        receiver_used / all.max(1.0) * 1e6
    );
}

fn main() {
    if std::env::args().any(|a| a == "events") {
        events_overhead();
        return;
    }
    if std::env::args().any(|a| a == "auth") {
        auth_table();
        return;
    }
    let mut columns = vec!["this build"];
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let core = Core::start_in(dir, &open_config(std::path::Path::new("data")));
    push(core.connector("hosted"), None);
    let (rps, cpu) = gets(&core, &[]);
    let mut get_rps = vec![rps];
    let mut get_cpu = vec![cpu];
    drop(core);
    if let Some(reference) = std::env::var_os("BERTH_REFERENCE_CORE").map(PathBuf::from) {
        columns.push("reference");
        let dir = tempfile::tempdir().unwrap();
        let core = Core::start_binary(reference, dir, &open_config(std::path::Path::new("data")));
        push(core.connector("hosted"), None);
        let (rps, cpu) = gets(&core, &[]);
        get_rps.push(rps);
        get_cpu.push(cpu);
    }
    rows.push(("manifest GET, open: requests/s", get_rps));
    rows.push(("manifest GET, open: CPU us/request", get_cpu));
    print_table(&columns, &rows);

    auth_table();
    events_overhead();
}

/// Access control: Basic with a remembered password or an API token, the registry tokens each
/// gets from the realm, and first logins; for the reference build too (`bench live -- auth`
/// runs only this).
fn auth_table() {
    let reference = std::env::var_os("BERTH_REFERENCE_CORE").map(PathBuf::from);
    let mut columns = vec!["this build"];
    let mut table = auth_costs(None);
    if let Some(r) = reference {
        columns.push("reference");
        for (row, v) in table.iter_mut().zip(auth_costs(Some(r))) {
            row.1.push(v.1[0]);
        }
    }
    print_table(&columns, &table);
}

/// A registry token for `basic` from the realm of `core`'s hosted connector.
fn bearer(core: &Core, basic: &str) -> String {
    let r = request(
        core.connector("hosted"),
        "GET",
        "/v2/token?service=berth&scope=repository:app:pull",
        &[("Authorization", basic)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    format!("Bearer {}", r.json()["token"].as_str().unwrap())
}

/// Requests/s and CPU per request for each credential kind on `binary` (this build's if
/// `None`), and CPU per first login by password and by API token.
fn auth_costs(binary: Option<PathBuf>) -> Vec<(&'static str, Vec<f64>)> {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = secured_config(&data, "root-password");
    let core = match binary {
        Some(b) => Core::start_binary(b, dir, &config),
        None => Core::start_in(dir, &config),
    };
    let root = basic("root", "root-password");
    push(core.connector("hosted"), Some(&root));
    let (passwords, tokens) = bench_users(&core, &root);
    let mut rows = Vec::new();
    let kinds = [
        ("Basic password", passwords[0].clone()),
        ("Basic API token", tokens[0].clone()),
        ("Bearer via password", bearer(&core, &passwords[0])),
        ("Bearer via API token", bearer(&core, &tokens[0])),
    ];
    let labels: [(&str, &str); 4] = [
        (
            "GET, Basic password: req/s",
            "GET, Basic password: CPU us/req",
        ),
        (
            "GET, Basic API token: req/s",
            "GET, Basic API token: CPU us/req",
        ),
        (
            "GET, bearer via password: req/s",
            "GET, bearer via password: CPU us/req",
        ),
        (
            "GET, bearer via token: req/s",
            "GET, bearer via token: CPU us/req",
        ),
    ];
    for ((_, cred), (rps_label, cpu_label)) in kinds.iter().zip(labels) {
        let (rps, cpu) = gets(&core, &[format!("Authorization: {cred}")]);
        rows.push((rps_label, vec![rps]));
        rows.push((cpu_label, vec![cpu]));
    }
    rows.push((
        "first login, password: CPU ms",
        vec![first_logins(&core, &passwords[1..])],
    ));
    rows.push((
        "first login, API token: CPU ms",
        vec![first_logins(&core, &tokens[1..])],
    ));
    rows
}

/// `FIRST_LOGINS + 1` users who may pull from `hosted`, each with an API token: their Basic
/// credentials by password and by token.
fn bench_users(core: &Core, root: &str) -> (Vec<String>, Vec<String>) {
    let api = |method: &str, path: &str, body: serde_json::Value| {
        let r = request(
            &core.main,
            method,
            &format!("/berth/api/v1{path}"),
            &[
                ("Authorization", root),
                ("Content-Type", "application/json"),
            ],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert!(
            r.status < 300,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    };
    let role = json!({ "name": "pull", "privileges": [{ "repositories": "hosted", "actions": ["read"] }] });
    api("POST", "/roles", role);
    let mut passwords = Vec::new();
    let mut tokens = Vec::new();
    for i in 0..=FIRST_LOGINS {
        let user = format!("u{i}");
        let pass = format!("password-{i}");
        let body = json!({ "name": user, "password": pass, "roles": ["pull"] });
        api("POST", "/users", body);
        let path = format!("/users/{user}/tokens");
        let t = api("POST", &path, json!({ "name": "bench" }));
        passwords.push(basic(&user, &pass));
        tokens.push(basic(&user, t["token"].as_str().unwrap()));
    }
    (passwords, tokens)
}
