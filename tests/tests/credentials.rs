//! Every credential means what it was issued for and no more — one test per hole a security
//! read of the registry found (issue 23): a registry token is never an admin credential, never
//! a login at the realm, and dies with the API token or user behind it; the catalog lists what
//! the caller may read; `ns` steers reads only; UI sessions are for the UI and end on logout or
//! a password change; the admin API takes no cross-site or non-JSON writes; the login back-off
//! cannot be outrun by a burst.

use std::time::Duration;

use base64::Engine as _;
use berth_tests::core::{hash_password, Core};
use berth_tests::http::{self, request, Response};
use berth_tests::registry::push_blob_as;
use serde_json::{json, Value};

/// root administers, alice reads/writes/deletes everywhere, erin writes `hosted` and reads the
/// group `all`; `public` allows anonymous pulls; `all` mirrors docker.io through the proxy
/// `hub` (whose upstream is never reached here) and stores pushes in `hosted`.
fn core() -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         auth:\n  login_attempts: 3\n  login_max_delay: 2s\n  users:\n\
         \x20   - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20   - {{ name: alice, password_hash: \"{}\", roles: [developers] }}\n\
         \x20   - {{ name: erin, password_hash: \"{}\", roles: [pushers] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: developers, privileges: [{{ repositories: \"*\", actions: [read, write, delete] }}] }}\n\
         \x20   - {{ name: pushers, privileges: [{{ repositories: hosted, actions: [read, write] }}, \
         {{ repositories: all, actions: [read] }}] }}\n\
         repositories:\n\
         \x20 - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: public, kind: hosted, anonymous_pull: true, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: hub, kind: proxy, remote: {{ url: \"http://127.0.0.1:9\" }} }}\n\
         \x20 - name: all\n    kind: group\n    members: [hosted, public, hub]\n\
         \x20   writable_member: hosted\n    mirrors: {{ docker.io: hub }}\n\
         \x20   connector: {{ http: 127.0.0.1:0 }}\n",
        dir.path().join("data").display(),
        hash_password("root-pw"),
        hash_password("alice-pw"),
        hash_password("erin-pw"),
    );
    Core::start_in(dir, &config)
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A token from the realm of `addr`: (status, token).
fn token(addr: &str, auth: Option<&str>, scope: &str) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
    let path = format!("/v2/token?service=berth&scope={scope}");
    let r = request(addr, "GET", &path, &headers, b"").unwrap();
    (
        r.status,
        r.json()["token"].as_str().unwrap_or("").to_owned(),
    )
}

fn get(addr: &str, path: &str, auth: &str) -> Response {
    request(addr, "GET", path, &[("Authorization", auth)], b"").unwrap()
}

/// An admin-API request with a JSON body, as scripts send it.
fn admin(core: &Core, method: &str, path: &str, auth: &str, body: Value) -> Response {
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/json"),
    ];
    request(
        &core.main,
        method,
        &format!("/berth{path}"),
        &headers,
        &body,
    )
    .unwrap()
}

/// Pushes a config blob and a manifest tagged `tag` naming it, with `ns` (`ns=HOST&` or
/// empty) on both; the manifest push's answer.
fn push_image(addr: &str, image: &str, ns: &str, tag: &str, auth: &str) -> Response {
    let config = format!("{{\"image\":\"{image}\"}}");
    let r = push_blob_as(addr, image, ns, auth, config.as_bytes());
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": http::digest(config.as_bytes()), "size": config.len() },
        "layers": [],
    })
    .to_string();
    let headers = [
        ("Authorization", auth),
        ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
    ];
    let path = format!("/v2/{image}/manifests/{tag}?{}", ns.trim_end_matches('&'));
    request(addr, "PUT", &path, &headers, manifest.as_bytes()).unwrap()
}

/// An API token of `user` with `privileges`, made by root: (id, secret).
fn api_token(core: &Core, user: &str, privileges: Value) -> (String, String) {
    let body = json!({ "name": "narrow", "privileges": privileges });
    let path = format!("/api/v1/users/{user}/tokens");
    let r = admin(core, "POST", &path, &basic("root", "root-pw"), body);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    (
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    )
}

fn new_user(name: &str) -> Value {
    json!({ "name": name, "password": "a-long-password", "roles": ["admins"] })
}

fn user_exists(core: &Core, name: &str) -> bool {
    let r = get(
        &core.main,
        &format!("/berth/api/v1/users/{name}"),
        &basic("root", "root-pw"),
    );
    r.status == 200
}

/// Hole 1: a realm token — from a narrowed API token or an admin's own login — is no admin
/// credential; only Basic with a password, or an API token given admin, opens the admin API.
#[test]
fn registry_tokens_never_open_the_admin_api() {
    let core = core();
    let hosted = core.connector("hosted").to_owned();
    let (_, narrow) = api_token(
        &core,
        "root",
        json!([{ "repositories": "hosted", "actions": ["read"] }]),
    );
    let narrow_basic = basic("root", &narrow);
    let r = admin(
        &core,
        "POST",
        "/api/v1/users",
        &narrow_basic,
        new_user("m1"),
    );
    assert_eq!(r.status, 401, "a narrowed API token is not an admin");

    for login in [narrow_basic, basic("root", "root-pw")] {
        let (status, t) = token(&hosted, Some(&login), "repository:app:pull");
        assert_eq!(status, 200);
        let r = admin(&core, "POST", "/api/v1/users", &bearer(&t), new_user("m2"));
        assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
        assert!(r
            .header("www-authenticate")
            .unwrap_or("")
            .starts_with("Basic"));
        let r = get(&core.main, "/berth/api/v1/users", &bearer(&t));
        assert_eq!(r.status, 401);
    }
    assert!(!user_exists(&core, "m1") && !user_exists(&core, "m2"));

    // An API token that was itself given admin does administer.
    let (_, full) = api_token(
        &core,
        "root",
        json!([{ "repositories": "*", "actions": ["admin"] }]),
    );
    let r = admin(
        &core,
        "POST",
        "/api/v1/users",
        &basic("root", &full),
        new_user("ok"),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// Hole 2: the realm takes Basic only; a token from an API token stays as narrow as it and
/// dies with it.
#[test]
fn the_realm_renews_nothing_and_api_token_revocation_ends_its_bearers() {
    let core = core();
    let hosted = core.connector("hosted").to_owned();
    let (id, secret) = api_token(
        &core,
        "alice",
        json!([{ "repositories": "hosted", "actions": ["read"] }]),
    );
    let (status, pull) = token(
        &hosted,
        Some(&basic("alice", &secret)),
        "repository:app:pull",
    );
    assert_eq!(status, 200);
    // A bearer presented back at the realm is no login.
    let r = get(
        &hosted,
        "/v2/token?service=berth&scope=repository:app:pull,push",
        &bearer(&pull),
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .starts_with("Basic"));
    // Narrowed to read: asking for push with the API token gives pull only.
    let (_, t) = token(
        &hosted,
        Some(&basic("alice", &secret)),
        "repository:app:pull,push",
    );
    assert_eq!(
        push_blob_as(&hosted, "app", "", &bearer(&t), b"narrow").status,
        401
    );
    assert_eq!(
        get(&hosted, "/v2/app/tags/list", &bearer(&pull)).status,
        404
    );

    // Revoking the API token ends every bearer it produced, before they expire.
    let path = format!("/api/v1/users/alice/tokens/{id}");
    let r = admin(
        &core,
        "DELETE",
        &path,
        &basic("root", "root-pw"),
        Value::Null,
    );
    assert_eq!(r.status, 204);
    assert_eq!(
        get(&hosted, "/v2/app/tags/list", &bearer(&pull)).status,
        401
    );
    let (status, _) = token(
        &hosted,
        Some(&basic("alice", &secret)),
        "repository:app:pull",
    );
    assert_eq!(status, 401);
}

fn catalog(addr: &str, auth: &str) -> (u16, Vec<String>) {
    let r = get(addr, "/v2/_catalog", auth);
    let names = r.json()["repositories"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    (r.status, names)
}

/// Hole 3: the catalog lists only what the identity behind a token may read.
#[test]
fn the_catalog_lists_only_what_the_caller_may_read() {
    let core = core();
    let hosted = core.connector("hosted").to_owned();
    let alice = basic("alice", "alice-pw");
    assert_eq!(
        push_image(&hosted, "secret-app", "", "v1", &alice).status,
        201
    );
    assert_eq!(catalog(&hosted, &alice).1, ["secret-app"]);

    let scope = "registry:catalog:*";
    let (status, anon) = token(&hosted, None, scope);
    assert_eq!(status, 200);
    let (status, names) = catalog(&hosted, &bearer(&anon));
    assert!(
        names.is_empty(),
        "anonymous token listed {names:?} ({status})"
    );

    let (_, t) = token(&hosted, Some(&alice), scope);
    assert_eq!(catalog(&hosted, &bearer(&t)).1, ["secret-app"]);
    let (_, secret) = api_token(
        &core,
        "alice",
        json!([{ "repositories": "public", "actions": ["read"] }]),
    );
    let (_, t) = token(&hosted, Some(&basic("alice", &secret)), scope);
    let (_, names) = catalog(&hosted, &bearer(&t));
    assert!(
        names.is_empty(),
        "a token narrowed to public listed {names:?}"
    );
}

/// Hole 4: `ns` steers reads only; writes land in the writable member and are checked there;
/// a mirror must be a proxy repository (config and admin API).
#[test]
fn ns_steers_reads_only_and_mirrors_are_proxies() {
    let core = core();
    let all = core.connector("all").to_owned();
    let hosted = core.connector("hosted").to_owned();
    let erin = basic("erin", "erin-pw");
    let ns = "ns=docker.io&";
    let r = push_blob_as(&all, "library/x", ns, &erin, b"erin's layer");
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let blob = format!("/v2/library/x/blobs/{}", http::digest(b"erin's layer"));
    assert_eq!(
        get(&hosted, &blob, &erin).status,
        200,
        "stored in the writable member"
    );
    let r = push_image(&all, "library/x", ns, "pwned", &erin);
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let alice = basic("alice", "alice-pw");
    assert_eq!(
        get(&hosted, "/v2/library/x/tags/list", &alice).json()["tags"],
        json!(["pwned"])
    );

    // The admin API refuses a mirror onto a hosted repository, naming the key.
    let connector = json!({ "http": all });
    let body = json!({ "kind": "group", "members": ["hosted", "public", "hub"],
        "writable_member": "hosted", "mirrors": { "docker.io": "hosted" }, "connector": connector });
    let r = admin(
        &core,
        "PUT",
        "/api/v1/repositories/all",
        &basic("root", "root-pw"),
        body,
    );
    let text = String::from_utf8_lossy(&r.body);
    assert!([400, 409].contains(&r.status), "{} {text}", r.status);
    assert!(text.contains("mirrors") && text.contains("proxy"), "{text}");

    // So does the config check.
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hosted, kind: hosted }}\n\
         \x20 - {{ name: g, kind: group, members: [hosted], mirrors: {{ docker.io: hosted }}, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display()
    );
    let file = dir.path().join("core.yaml");
    std::fs::write(&file, config).unwrap();
    let out = berth_tests::core::check_config(&file);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("mirrors") && err.contains("proxy"), "{err}");
}

/// Signs in to the UI; the session cookie's value.
fn ui_login(core: &Core, user: &str, pass: &str) -> String {
    let form = format!("user={user}&password={pass}");
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = request(
        &core.main,
        "POST",
        "/berth/ui/login",
        &headers,
        form.as_bytes(),
    )
    .unwrap();
    let cookie = r.header("set-cookie").unwrap_or_default();
    let value = cookie
        .strip_prefix("berth_session=")
        .and_then(|c| c.split(';').next())
        .unwrap_or_default();
    assert!(!value.is_empty(), "{} {cookie}", r.status);
    value.to_owned()
}

fn ui_admin_status(core: &Core, session: &str) -> u16 {
    let cookie = format!("berth_session={session}");
    request(
        &core.main,
        "GET",
        "/berth/ui/admin",
        &[("Cookie", &cookie)],
        b"",
    )
    .unwrap()
    .status
}

/// Hole 5: a UI session is not a bearer token and a bearer token is not a session; logout
/// and a password change end sessions.
#[test]
fn sessions_are_for_the_ui_and_end() {
    let core = core();
    let hosted = core.connector("hosted").to_owned();
    let session = ui_login(&core, "root", "root-pw");
    assert_eq!(ui_admin_status(&core, &session), 200);
    let r = get(&core.main, "/berth/api/v1/users", &bearer(&session));
    assert_eq!(r.status, 401, "a session is no admin-API bearer");
    let r = get(
        &hosted,
        "/v2/token?service=berth&scope=repository:app:pull,push,delete",
        &bearer(&session),
    );
    assert_eq!(r.status, 401, "a session is no realm login");
    assert_eq!(
        get(&hosted, "/v2/app/tags/list", &bearer(&session)).status,
        401
    );
    let (_, t) = token(
        &hosted,
        Some(&basic("root", "root-pw")),
        "repository:app:pull",
    );
    assert_ne!(
        ui_admin_status(&core, &t),
        200,
        "a registry token is no session"
    );

    // Logout ends the session itself, not just the cookie.
    let cookie = format!("berth_session={session}");
    request(
        &core.main,
        "GET",
        "/berth/ui/logout",
        &[("Cookie", &cookie)],
        b"",
    )
    .unwrap();
    assert_ne!(ui_admin_status(&core, &session), 200, "alive after logout");

    // A password change ends every session of the user.
    let session = ui_login(&core, "root", "root-pw");
    assert_eq!(ui_admin_status(&core, &session), 200);
    let pw = json!({ "password": "root-pw-2" });
    let r = admin(
        &core,
        "PUT",
        "/api/v1/users/root/password",
        &basic("root", "root-pw"),
        pw,
    );
    assert_eq!(r.status, 204);
    assert_ne!(
        ui_admin_status(&core, &session),
        200,
        "alive after a password change"
    );
}

/// Hole 6: admin-API writes take JSON from the same site only.
#[test]
fn the_admin_api_refuses_forged_writes() {
    let core = core();
    let root = basic("root", "root-pw");
    let body = new_user("forged").to_string();
    let send = |headers: &[(&str, &str)]| {
        let mut h = vec![("Authorization", root.as_str())];
        h.extend_from_slice(headers);
        request(
            &core.main,
            "POST",
            "/berth/api/v1/users",
            &h,
            body.as_bytes(),
        )
        .unwrap()
    };
    let r = send(&[("Content-Type", "text/plain")]);
    assert_eq!(r.status, 415, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(send(&[]).status, 415);
    let json = ("Content-Type", "application/json");
    for site in ["cross-site", "same-site"] {
        let r = send(&[json, ("Sec-Fetch-Site", site)]);
        assert_eq!((r.status, r.code().as_str()), (403, "FORBIDDEN"));
    }
    let r = send(&[json, ("Origin", "https://evil.example")]);
    assert_eq!(r.status, 403);
    assert!(!user_exists(&core, "forged"));
    // The same request as a script sends it is fine.
    assert_eq!(send(&[json]).status, 201);
    assert!(user_exists(&core, "forged"));
}

/// Hole 7: once a wait ends, a burst of concurrent guesses gets one verification, not all.
#[test]
fn a_burst_of_guesses_cannot_outrun_the_back_off() {
    let core = core();
    let hosted = core.connector("hosted").to_owned();
    let guess = |i: usize| get(&hosted, "/v2/", &basic("alice", &format!("guess{i}"))).status;
    for i in 0..3 {
        assert_eq!(guess(i), 401);
    }
    let r = get(&hosted, "/v2/", &basic("alice", "guess3"));
    assert_eq!(r.status, 429);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(wait * 1000 + 200));

    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40).map(|i| s.spawn(move || guess(100 + i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let verified = statuses.iter().filter(|&&s| s == 401).count();
    let slowed = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!(verified + slowed, statuses.len(), "{statuses:?}");
    assert!(
        verified <= 1,
        "{verified} of 40 guesses verified: {statuses:?}"
    );
}

/// Hole 8: a deleted user's tokens stop working on the next request.
#[test]
fn a_deleted_users_tokens_die_with_the_user() {
    let core = core();
    let hosted = core.connector("hosted").to_owned();
    let root = basic("root", "root-pw");
    let carol = json!({ "name": "carol", "password": "carol-password", "roles": ["developers"] });
    assert_eq!(
        admin(&core, "POST", "/api/v1/users", &root, carol).status,
        201
    );
    let (status, t) = token(
        &hosted,
        Some(&basic("carol", "carol-password")),
        "repository:app:pull,push",
    );
    assert_eq!(status, 200);
    assert_eq!(
        push_blob_as(&hosted, "app", "", &bearer(&t), b"carol's").status,
        201
    );
    let r = admin(&core, "DELETE", "/api/v1/users/carol", &root, Value::Null);
    assert_eq!(r.status, 204);
    assert_eq!(
        push_blob_as(&hosted, "app", "", &bearer(&t), b"ghost").status,
        401
    );
    let blob = format!("/v2/app/blobs/{}", http::digest(b"carol's"));
    assert_eq!(get(&hosted, &blob, &bearer(&t)).status, 401);
}
