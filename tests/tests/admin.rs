//! The admin API changing a running core: repositories of every kind created, changed and
//! deleted with their ports opened and closed live, errors that name the key or the holder of
//! a port, and every change still there after a restart.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use berth_tests::core::Core;
use berth_tests::edge::free_port;
use berth_tests::http::{request, Response};
use berth_tests::registry::{get, oci_manifest, push_blob, put_manifest};

const API: &str = "/berth/api/v1";

fn call(core: &Core, method: &str, path: &str, body: Option<Value>) -> Response {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    request(
        &core.main,
        method,
        &format!("{API}{path}"),
        &[("Content-Type", "application/json")],
        bytes.as_bytes(),
    )
    .unwrap()
}

fn hosted(name: &str, port: u16) -> Value {
    json!({ "name": name, "kind": "hosted", "connector": { "http": format!("127.0.0.1:{port}") } })
}

/// Pushes a one-layer image and returns its manifest digest.
fn push_image(addr: &str, image: &str, tag: &str) -> String {
    let config = format!("{{\"for\":\"{image}:{tag}\"}}").into_bytes();
    let layer = format!("layer of {image}:{tag}").into_bytes();
    for b in [&config, &layer] {
        assert_eq!(push_blob(addr, image, b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[&layer]);
    let r = put_manifest(addr, image, tag, &m).unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    berth_tests::http::digest(&m)
}

fn refused(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}

#[test]
fn repositories_are_created_changed_and_deleted_live_and_survive_a_restart() {
    let mut core = Core::start();
    let (p1, p2) = (free_port(), free_port());
    let a1 = format!("127.0.0.1:{p1}");
    let a2 = format!("127.0.0.1:{p2}");

    // Created: its port answers at once, and it takes pushes.
    assert!(refused(&a1));
    let r = call(&core, "POST", "/repositories", Some(hosted("live", p1)));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["origin"]["source"], "api");
    assert_eq!(r.json()["listening"][0]["address"], a1);
    let digest = push_image(&a1, "app", "v1");
    assert_eq!(get(&a1, "app", "manifests", "v1").unwrap().status, 200);

    // Refused, naming why; nothing changes.
    let r = call(&core, "POST", "/repositories", Some(hosted("live", p2)));
    assert_eq!(r.status, 409, "same name");
    let r = call(&core, "POST", "/repositories", Some(hosted("other", p1)));
    assert_eq!(r.status, 409, "port of another repository");
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert!(msg.contains("live"), "names the holder: {msg}");
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = squatter.local_addr().unwrap().port();
    let r = call(&core, "POST", "/repositories", Some(hosted("other", busy)));
    assert_eq!(r.status, 409, "port held by another process");
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        msg.contains(&busy.to_string()) && msg.contains("other"),
        "{msg}"
    );
    let me = format!("pid {} ", std::process::id());
    assert!(
        msg.contains(&me),
        "names the process holding the port: {msg}"
    );
    let bad = json!({ "name": "bad", "kind": "hosted", "connector": { "http": "nope" } });
    let r = call(&core, "POST", "/repositories", Some(bad));
    assert_eq!(r.status, 400);
    let msg = String::from_utf8_lossy(&r.body).to_string();
    assert!(msg.contains("connector.http"), "names the key: {msg}");
    let r = call(
        &core,
        "POST",
        "/repositories",
        Some(json!({ "name": "x", "kind": "cellar" })),
    );
    assert_eq!(r.status, 400);
    assert_eq!(call(&core, "GET", "/repositories/other", None).status, 404);

    // Changed: it moves to another port and keeps its content; the old port closes.
    let mut moved = hosted("live", p2);
    moved["immutable_tags"] = json!(["^v"]);
    let r = call(&core, "PUT", "/repositories/live", Some(moved));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(refused(&a1), "the old port is closed");
    let r = get(&a2, "app", "manifests", &digest).unwrap();
    assert_eq!(r.status, 200);
    // The new settings apply at once: v1 is now immutable.
    let again = oci_manifest(b"{}", &[]);
    assert_eq!(push_blob(&a2, "app", b"{}").unwrap().status, 201);
    assert_eq!(put_manifest(&a2, "app", "v1", &again).unwrap().status, 403);

    // A config-file repository changed at run time says so.
    let hosted_addr = core.connector("hosted").to_owned();
    let over = json!({ "kind": "hosted", "v1_enabled": true,
        "connector": { "http": hosted_addr } });
    let r = call(&core, "PUT", "/repositories/hosted", Some(over));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["origin"]["source"], "api_overrides_config");
    assert_eq!(
        request(&hosted_addr, "GET", "/v1/_ping", &[], b"")
            .unwrap()
            .status,
        200
    );

    // A group over it: the member cannot go while the group lists it.
    let p3 = free_port();
    let group = json!({ "name": "all", "kind": "group", "members": ["live", "hosted"],
        "connector": { "http": format!("127.0.0.1:{p3}") } });
    assert_eq!(
        call(&core, "POST", "/repositories", Some(group)).status,
        201
    );
    let through = format!("127.0.0.1:{p3}");
    assert_eq!(get(&through, "app", "manifests", "v1").unwrap().status, 200);
    let r = call(&core, "DELETE", "/repositories/live", None);
    assert_eq!(r.status, 409);
    assert!(String::from_utf8_lossy(&r.body).contains("all"));

    // Restart: every change is still there, with the ports it had.
    core.restart_same_ports();
    let list = call(&core, "GET", "/repositories", None).json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["all", "hosted", "live"]);
    assert_eq!(get(&a2, "app", "manifests", "v1").unwrap().status, 200);
    assert_eq!(get(&through, "app", "manifests", "v1").unwrap().status, 200);
    assert_eq!(
        request(&hosted_addr, "GET", "/v1/_ping", &[], b"")
            .unwrap()
            .status,
        200
    );

    // Deleted: the group first, then the member; their ports close.
    assert_eq!(call(&core, "DELETE", "/repositories/all", None).status, 204);
    assert!(refused(&through));
    assert_eq!(
        call(&core, "DELETE", "/repositories/live", None).status,
        204
    );
    assert!(refused(&a2));
    assert_eq!(call(&core, "GET", "/repositories/live", None).status, 404);
    // The config file's repository deleted at run time stays deleted after a restart.
    assert_eq!(
        call(&core, "DELETE", "/repositories/hosted", None).status,
        204
    );
    core.restart_same_ports();
    assert_eq!(call(&core, "GET", "/repositories", None).json(), json!([]));
    // Re-created under the same name, it starts empty: the old content went to the trash.
    let r = call(&core, "POST", "/repositories", Some(hosted("live", p1)));
    assert_eq!(r.status, 201);
    assert_eq!(get(&a1, "app", "manifests", "v1").unwrap().status, 404);
    drop(squatter);
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    format!("Basic {b}")
}

fn as_user(core: &Core, auth: &str, method: &str, path: &str, body: Option<Value>) -> Response {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    request(
        &core.main,
        method,
        &format!("{API}{path}"),
        &[
            ("Content-Type", "application/json"),
            ("Authorization", auth),
        ],
        bytes.as_bytes(),
    )
    .unwrap()
}

/// A blob push with credentials; the status.
fn push_as(addr: &str, auth: &str, data: &[u8]) -> u16 {
    let path = format!(
        "/v2/app/blobs/uploads/?digest={}",
        berth_tests::http::digest(data)
    );
    request(addr, "POST", &path, &[("Authorization", auth)], data)
        .unwrap()
        .status
}

fn pull_as(addr: &str, auth: &str, data: &[u8]) -> u16 {
    let path = format!("/v2/app/blobs/{}", berth_tests::http::digest(data));
    request(addr, "GET", &path, &[("Authorization", auth)], b"")
        .unwrap()
        .status
}

#[test]
fn users_roles_and_scoped_tokens_change_live_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = berth_tests::core::secured_config(&dir.path().join("data"), "root-password");
    let mut core = Core::start_in(dir, &config);
    let root = basic("root", "root-password");
    let repo = core.connector("hosted").to_owned();

    // Not without an admin.
    assert_eq!(call(&core, "GET", "/users", None).status, 401);

    let ci = json!({ "name": "ci", "privileges": [{ "repositories": "hosted", "actions": ["read", "write"] }] });
    assert_eq!(
        as_user(&core, &root, "POST", "/roles", Some(ci)).status,
        201
    );
    let carol = json!({ "name": "carol", "password": "carol-pass-1", "roles": ["ci"] });
    let r = as_user(&core, &root, "POST", "/users", Some(carol));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        !String::from_utf8_lossy(&r.body).contains("argon2"),
        "no hash shown"
    );
    let nobody = json!({ "name": "eve", "password": "eve-pass-12", "roles": ["nosuch"] });
    assert_eq!(
        as_user(&core, &root, "POST", "/users", Some(nobody)).status,
        409
    );
    let short = json!({ "name": "eve", "password": "short" });
    assert_eq!(
        as_user(&core, &root, "POST", "/users", Some(short)).status,
        400
    );

    // carol pushes with her password at once.
    let carol_pw = basic("carol", "carol-pass-1");
    assert_eq!(push_as(&repo, &carol_pw, b"first"), 201);

    // A pull-only token, shown once.
    let t = json!({ "name": "ci-pull", "privileges": [{ "repositories": "hosted", "actions": ["read"] }] });
    let r = as_user(&core, &root, "POST", "/users/carol/tokens", Some(t));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let token = r.json()["token"].as_str().unwrap().to_owned();
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with("berth_"));
    let listed = as_user(&core, &root, "GET", "/users/carol/tokens", None);
    assert_eq!(listed.json()[0]["id"], id.as_str());
    assert!(
        !String::from_utf8_lossy(&listed.body).contains(&token),
        "never shown again"
    );
    let with_token = basic("carol", &token);
    assert_eq!(pull_as(&repo, &with_token, b"first"), 200);
    assert_eq!(
        push_as(&repo, &with_token, b"second"),
        403,
        "the token is pull-only"
    );
    assert_eq!(
        pull_as(&repo, &basic("root", &token), b"first"),
        401,
        "not root's token"
    );
    assert_eq!(
        as_user(&core, &with_token, "GET", "/users", None).status,
        401
    );

    // A role in use cannot go; a password change applies at once.
    assert_eq!(
        as_user(&core, &root, "DELETE", "/roles/ci", None).status,
        409
    );
    let pw = json!({ "password": "carol-pass-2" });
    assert_eq!(
        as_user(&core, &root, "PUT", "/users/carol/password", Some(pw)).status,
        204
    );
    assert_eq!(pull_as(&repo, &carol_pw, b"first"), 401, "old password");
    let carol_pw2 = basic("carol", "carol-pass-2");
    assert_eq!(pull_as(&repo, &carol_pw2, b"first"), 200);

    // Everything survives a restart.
    core.restart_same_ports();
    let repo = core.connector("hosted").to_owned();
    assert_eq!(pull_as(&repo, &carol_pw2, b"first"), 200);
    assert_eq!(pull_as(&repo, &with_token, b"first"), 200);
    let users = as_user(&core, &root, "GET", "/users", None).json();
    assert_eq!(users[0]["name"], "root");
    assert_eq!(users[0]["origin"]["source"], "config");
    assert_eq!(users[1]["name"], "carol");
    assert_eq!(users[1]["origin"]["source"], "api");

    // Revoked, the token stops working on the next request; a deleted user takes its tokens.
    let path = format!("/users/carol/tokens/{id}");
    assert_eq!(as_user(&core, &root, "DELETE", &path, None).status, 204);
    assert_eq!(pull_as(&repo, &with_token, b"first"), 401);
    assert_eq!(
        as_user(&core, &root, "DELETE", "/users/carol", None).status,
        204
    );
    assert_eq!(pull_as(&repo, &carol_pw2, b"first"), 401);
    assert_eq!(
        as_user(&core, &root, "DELETE", "/roles/ci", None).status,
        204
    );
    let log = core.log();
    assert!(log.contains("revoke token"), "audit lines: {log}");
}

/// A direct-HTTPS connector created at run time serves TLS at once with its certificate, and
/// the certificate inventory shows it (subject, names, days left).
#[test]
fn a_direct_https_connector_opens_live_and_is_in_the_certificate_inventory() {
    let core = Core::start();
    let tls = tempfile::tempdir().unwrap();
    berth_tests::edge::make_ca(tls.path());
    let (cert, key) = berth_tests::edge::issue(
        tls.path(),
        tls.path(),
        "direct",
        &["registry.test"],
        &["127.0.0.1"],
    );
    let port = free_port();
    let body = json!({ "name": "direct", "kind": "hosted", "connector": { "https": {
        "listen": format!("127.0.0.1:{port}"),
        "cert": cert.display().to_string(), "key": key.display().to_string() } } });
    let r = call(&core, "POST", "/repositories", Some(body));
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["listening"][0]["https"], true);
    let out = berth_tests::edge::curl(
        &tls.path().join("ca.crt"),
        "registry.test",
        "127.0.0.1",
        port,
    )
    .arg(format!("https://registry.test:{port}/v2/"))
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{}");
    let inv = call(&core, "GET", "/certificates", None).json();
    assert_eq!(inv[0]["repository"], "direct");
    assert!(
        inv[0]["names"].to_string().contains("registry.test"),
        "{inv}"
    );
    assert!(inv[0]["days_left"].as_i64().unwrap() > 300, "{inv}");
    // A certificate that does not match its key is refused before anything changes.
    let other = berth_tests::edge::issue(tls.path(), tls.path(), "other", &["x.test"], &[]);
    let bad = json!({ "name": "broken", "kind": "hosted", "connector": { "https": {
        "listen": format!("127.0.0.1:{}", free_port()),
        "cert": cert.display().to_string(), "key": other.1.display().to_string() } } });
    let r = call(&core, "POST", "/repositories", Some(bad));
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(call(&core, "GET", "/repositories/broken", None).status, 404);
}
