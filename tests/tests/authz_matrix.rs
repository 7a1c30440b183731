//! The authorization matrix: every route of the registry API, the admin API and the web UI
//! (method × path), asked by four principals — an admin, a user who may push to one repository
//! only, a user who may only pull, and anonymous — each with every credential a client can
//! hold: a password (Basic), an API token (Basic), a registry token from the realm (Bearer) and
//! a UI session cookie. Each cell has one expected answer, derived from the principal's
//! privileges and what each front-end accepts (the registry API: Basic and Bearer; the admin
//! API: an admin's password; the UI: its cookie only). Every cell that answers otherwise is
//! listed, so the next hole is found here before a user finds it.
//!
//! Beside the table: a registry token issued for one repository used on another, several
//! `scope` parameters and `*` actions trying to widen a token, and secrets (passwords, token
//! secrets, a remote's password, a webhook's header) never in API answers or in the log.

#![allow(clippy::unwrap_used)]

use berth_tests::core::Core;
use berth_tests::http::{basic, request, Response};
use berth_tests::principals::{
    callers, config, may, put_manifest, realm, root, seed, Act, Caller, Cred, Fixture, Who,
    HOOK_SECRET, REMOTE_SECRET, USERS,
};

/// The cells that answered otherwise, as lines.
#[derive(Default)]
struct Wrong(Vec<String>, usize);

impl Wrong {
    fn check(&mut self, cell: String, r: &Response, expected: &[u16]) {
        self.1 += 1;
        if !expected.contains(&r.status) {
            let body = String::from_utf8_lossy(&r.body);
            let body: String = body.chars().take(160).collect();
            self.0.push(format!(
                "{cell}: {} (expected {expected:?}) {body}",
                r.status
            ));
        }
    }
}

const DENIED: &[u16] = &[401, 403];

/// The registry API on both connectors.
fn registry_cells(f: &Fixture, c: &Caller, wrong: &mut Wrong) {
    let manifest_type = ("Content-Type", "application/vnd.oci.image.manifest.v1+json");
    for repo in ["team", "other"] {
        let addr = f.core.connector(repo);
        let who = c.registry();
        let blob = format!("/v2/app/blobs/{}", f.config_digest);
        let mount = format!("/v2/app/blobs/uploads/?mount={}&from=app", f.config_digest);
        let referrers = format!("/v2/app/referrers/{}", f.v1);
        let cells: [(&str, &str, Option<Act>, &[u16]); 11] = [
            ("GET", "/v2/", None, &[200]),
            ("GET", "/v2/_catalog", Some(Act::Pull), &[200]),
            ("GET", "/v2/app/tags/list", Some(Act::Pull), &[200]),
            ("GET", "/v2/app/manifests/v1", Some(Act::Pull), &[200]),
            ("HEAD", "/v2/app/manifests/v1", Some(Act::Pull), &[200]),
            ("GET", &blob, Some(Act::Pull), &[200]),
            ("GET", &referrers, Some(Act::Pull), &[200]),
            ("POST", "/v2/app/blobs/uploads/", Some(Act::Push), &[202]),
            ("POST", &mount, Some(Act::Push), &[201]),
            ("PUT", "/v2/app/manifests/scratch", Some(Act::Push), &[201]),
            (
                "DELETE",
                "/v2/app/manifests/scratch",
                Some(Act::Delete),
                &[202],
            ),
        ];
        for (method, path, act, ok) in cells {
            let allowed = match act {
                // The base answers 200 to any valid credential.
                None => who != Who::Anon || c.cred == Cred::Bearer,
                Some(a) => may(who, repo, a),
            };
            let mut headers = c.header(repo);
            let body: &[u8] = if method == "PUT" {
                headers.push(manifest_type);
                &f.manifest
            } else {
                b""
            };
            let r = request(addr, method, path, &headers, body).unwrap();
            let cell = format!("{} {method} {repo}{path}", c.label());
            if path == "/v2/_catalog" {
                // Everyone gets an answer; only readers see the image.
                let lists = String::from_utf8_lossy(&r.body).contains("\"app\"");
                if lists != allowed {
                    wrong.0.push(format!("{cell}: lists app: {lists}"));
                }
                continue;
            }
            wrong.check(cell, &r, if allowed { ok } else { DENIED });
            if allowed && r.status < 300 {
                tidy(f, addr, method, &r);
            }
        }
    }
}

/// Undoes what an allowed cell changed: a deleted scratch tag comes back, a session goes.
fn tidy(f: &Fixture, addr: &str, method: &str, r: &Response) {
    match method {
        "DELETE" => {
            put_manifest(addr, &root(), "scratch", &f.manifest);
        }
        "POST" if r.status == 202 => {
            let at = r.header("location").unwrap_or_default();
            let path = at
                .split_once("//")
                .map_or(at, |(_, rest)| rest.find('/').map_or(rest, |i| &rest[i..]));
            request(addr, "DELETE", path, &[("Authorization", &root())], b"").unwrap();
        }
        _ => {}
    }
}

/// The admin API: an admin's password opens it; a user sets their own password; health and
/// the document are for anyone.
fn admin_cells(f: &Fixture, c: &Caller, wrong: &mut Wrong) {
    let admin = c.admin_api();
    // A user sets their own password with it (not with an API token).
    let own = |who: Who| admin || (c.who == who && c.cred == Cred::Password);
    let cells: &[(&str, &str, &str, bool, &[u16])] = &[
        ("GET", "/health", "", true, &[200]),
        ("GET", "/api/v1/openapi.json", "", true, &[200]),
        ("GET", "/api/v1/repositories", "", admin, &[200]),
        ("POST", "/api/v1/repositories", "{}", admin, &[400]),
        ("GET", "/api/v1/repositories/team", "", admin, &[200]),
        ("PUT", "/api/v1/repositories/nope", "{}", admin, &[400, 404]),
        ("DELETE", "/api/v1/repositories/nope", "", admin, &[404]),
        ("GET", "/api/v1/certificates", "", admin, &[200]),
        ("GET", "/api/v1/gc", "", admin, &[200]),
        ("POST", "/api/v1/gc?dry_run=true", "", admin, &[200]),
        ("GET", "/api/v1/signing-key", "", admin, &[200]),
        ("GET", "/api/v1/repositories/team/usage", "", admin, &[200]),
        (
            "GET",
            "/api/v1/repositories/team/history?image=app",
            "",
            admin,
            &[200],
        ),
        (
            "GET",
            "/api/v1/repositories/team/cleanup",
            "",
            admin,
            &[200],
        ),
        (
            "POST",
            "/api/v1/repositories/team/cleanup?dry_run=true",
            "",
            admin,
            &[200],
        ),
        (
            "POST",
            "/api/v1/repositories/team/restore",
            r#"{"image":"app"}"#,
            admin,
            &[400],
        ),
        ("GET", "/api/v1/users", "", admin, &[200]),
        ("POST", "/api/v1/users", "{}", admin, &[400]),
        ("GET", "/api/v1/users/rita", "", admin, &[200]),
        ("PUT", "/api/v1/users/nope", "{}", admin, &[404]),
        ("DELETE", "/api/v1/users/nope", "", admin, &[404]),
        (
            "PUT",
            "/api/v1/users/pat/password",
            r#"{"password":"short"}"#,
            own(Who::Pusher),
            &[400],
        ),
        (
            "PUT",
            "/api/v1/users/rita/password",
            r#"{"password":"short"}"#,
            own(Who::Reader),
            &[400],
        ),
        ("GET", "/api/v1/users/pat/tokens", "", admin, &[200]),
        ("POST", "/api/v1/users/pat/tokens", "{}", admin, &[400]),
        ("DELETE", "/api/v1/users/pat/tokens/nope", "", admin, &[404]),
        ("GET", "/api/v1/roles", "", admin, &[200]),
        ("GET", "/api/v1/directory-users", "", admin, &[200]),
        ("POST", "/api/v1/roles", "{}", admin, &[400]),
        ("GET", "/api/v1/roles/admins", "", admin, &[200]),
        ("PUT", "/api/v1/roles/nope", "{}", admin, &[400, 404]),
        ("DELETE", "/api/v1/roles/nope", "", admin, &[404]),
        ("GET", "/api/v1/nowhere", "", admin, &[404]),
    ];
    for (method, path, body, allowed, ok) in cells {
        let mut headers = c.header("team");
        headers.push(("Content-Type", "application/json"));
        let r = request(
            &f.core.main,
            method,
            &format!("/berth{path}"),
            &headers,
            body.as_bytes(),
        )
        .unwrap();
        let cell = format!("{} {method} admin{path}", c.label());
        wrong.check(cell, &r, if *allowed { ok } else { DENIED });
    }
}

/// The web UI: pages by read privilege (an unreadable repository is not found), forms by the
/// privilege their action needs.
fn ui_cells(f: &Fixture, c: &Caller, wrong: &mut Wrong) {
    let who = c.ui();
    let signed_in = who != Who::Anon;
    let read = |repo: &str| if may(who, repo, Act::Pull) { 200 } else { 404 };
    // A form on a repository: done (303), refused (403), or the repository is hidden (404).
    let form = |act: Act| {
        if may(who, "team", act) {
            303
        } else if may(who, "team", Act::Pull) {
            403
        } else {
            404
        }
    };
    let admin = |ok: u16| if who == Who::Admin { ok } else { 403 };
    let own = |ok: u16| if signed_in { ok } else { 401 };
    let pw = USERS.iter().find(|u| u.0 == c.who).map_or("", |u| u.2);
    let account_pw = format!("current={pw}&password=short&confirm=short");
    let restore = format!("repo=team&image=app&tag=scratch&digest={}", f.v1);
    let cells: Vec<(&str, &str, String, u16)> = vec![
        ("GET", "/berth/", String::new(), 200),
        ("GET", "/berth/ui/style.css", String::new(), 200),
        (
            "GET",
            "/berth/ui/repository?name=team",
            String::new(),
            read("team"),
        ),
        (
            "GET",
            "/berth/ui/repository?name=other",
            String::new(),
            read("other"),
        ),
        (
            "GET",
            "/berth/ui/image?repo=team&image=app",
            String::new(),
            read("team"),
        ),
        (
            "GET",
            "/berth/ui/manifest?repo=other&image=app&ref=v1",
            String::new(),
            read("other"),
        ),
        ("GET", "/berth/ui/admin", String::new(), admin(200)),
        ("GET", "/berth/ui/account", String::new(), own(200)),
        (
            "POST",
            "/berth/ui/delete",
            "repo=team&image=app&ref=scratch".into(),
            form(Act::Delete),
        ),
        ("POST", "/berth/ui/restore", restore, form(Act::Push)),
        (
            "POST",
            "/berth/ui/admin/repositories",
            String::new(),
            admin(400),
        ),
        ("POST", "/berth/ui/admin/gc", String::new(), admin(200)),
        (
            "POST",
            "/berth/ui/admin/cleanup",
            "repo=team".into(),
            admin(200),
        ),
        (
            "POST",
            "/berth/ui/admin/password",
            "user=nobody&password=long-enough".into(),
            admin(404),
        ),
        ("POST", "/berth/ui/account/password", account_pw, own(400)),
        (
            "POST",
            "/berth/ui/account/tokens",
            "name=&action=pull".into(),
            own(400),
        ),
        (
            "POST",
            "/berth/ui/account/tokens/revoke",
            "id=nope".into(),
            own(404),
        ),
    ];
    for (method, path, body, expected) in cells {
        let mut headers = c.header("team");
        headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        let r = request(&f.core.main, method, path, &headers, body.as_bytes()).unwrap();
        let cell = format!("{} {method} {path}", c.label());
        wrong.check(cell, &r, &[expected]);
        if path == "/berth/ui/delete" && r.status == 303 {
            put_manifest(f.core.connector("team"), &root(), "scratch", &f.manifest);
        }
    }
    // Search lists what the viewer may read, nothing else.
    let r = request(
        &f.core.main,
        "GET",
        "/berth/ui/search?q=app",
        &c.header("team"),
        b"",
    )
    .unwrap();
    let page = String::from_utf8_lossy(&r.body);
    for repo in ["team", "other"] {
        let lists = page.contains(&format!("{repo} / app"));
        if lists != may(who, repo, Act::Pull) {
            wrong
                .0
                .push(format!("{} search lists {repo}/app: {lists}", c.label()));
        }
    }
}

#[test]
fn every_route_answers_every_principal_as_its_privileges_say() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("hub.pass");
    std::fs::write(&pass, format!("{REMOTE_SECRET}\n")).unwrap();
    let text = config(&dir.path().join("data"), &pass);
    let core = Core::start_in(dir, &text);
    let (v1, manifest, config_digest) = seed(&core);
    let f = Fixture {
        core,
        v1,
        manifest,
        config_digest,
    };
    let callers = callers(&f.core);
    let mut wrong = Wrong::default();
    for c in &callers {
        registry_cells(&f, c, &mut wrong);
        admin_cells(&f, c, &mut wrong);
        ui_cells(&f, c, &mut wrong);
    }
    eprintln!("{} callers, {} cells", callers.len(), wrong.1);
    assert!(
        wrong.0.is_empty(),
        "{} wrong cells:\n{}",
        wrong.0.len(),
        wrong.0.join("\n")
    );
    secrets_stay_secret(&f, &callers);
}

/// What the answers and the log must never show.
fn secrets_stay_secret(f: &Fixture, callers: &[Caller]) {
    let mut shown = String::new();
    for path in [
        "/api/v1/users",
        "/api/v1/users/pat",
        "/api/v1/users/pat/tokens",
        "/api/v1/repositories",
        "/api/v1/repositories/hub",
        "/api/v1/signing-key",
        "/api/v1/roles",
    ] {
        let r = request(
            &f.core.main,
            "GET",
            &format!("/berth{path}"),
            &[("Authorization", &root())],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{path}");
        shown.push_str(&String::from_utf8_lossy(&r.body));
    }
    let log = f.core.log();
    let mut secrets: Vec<String> = vec![
        REMOTE_SECRET.into(),
        HOOK_SECRET.into(),
        "$argon2".into(),
        "secret_sha256".into(),
    ];
    secrets.extend(USERS.iter().map(|u| u.2.to_owned()));
    // Every credential the callers held: API token secrets, bearer tokens, cookies.
    for c in callers {
        for (_, v) in &c.headers {
            let raw = v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("berth_session="))
                .map(str::to_owned)
                .or_else(|| basic_password(v));
            secrets.extend(raw);
        }
    }
    for s in &secrets {
        assert!(!shown.contains(s.as_str()), "an admin answer shows {s:?}");
        assert!(!log.contains(s.as_str()), "the log shows {s:?}");
    }
}

/// The password of a Basic header.
fn basic_password(v: &str) -> Option<String> {
    use base64::Engine as _;
    let b = v.strip_prefix("Basic ")?;
    let plain = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    let plain = String::from_utf8(plain).ok()?;
    plain.split_once(':').map(|(_, p)| p.to_owned())
}

/// A token issued for one repository does not open another; `scope` parameters and `*`
/// widen nothing.
#[test]
fn registry_tokens_are_no_wider_than_their_grant() {
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("hub.pass");
    std::fs::write(&pass, format!("{REMOTE_SECRET}\n")).unwrap();
    let text = config(&dir.path().join("data"), &pass);
    let core = Core::start_in(dir, &text);
    let (_, manifest, _) = seed(&core);
    let (team, other) = (core.connector("team"), core.connector("other"));
    let rita = basic("rita", USERS[2].2);
    let pat = basic("pat", USERS[1].2);
    let get = |addr: &str, token: &str| {
        let h = format!("Bearer {token}");
        request(
            addr,
            "GET",
            "/v2/app/manifests/v1",
            &[("Authorization", &h)],
            b"",
        )
        .unwrap()
        .status
    };
    let put = |addr: &str, token: &str| {
        put_manifest(addr, &format!("Bearer {token}"), "scratch", &manifest).status
    };
    let delete = |addr: &str, token: &str| {
        let h = format!("Bearer {token}");
        request(
            addr,
            "DELETE",
            "/v2/app/manifests/scratch",
            &[("Authorization", &h)],
            b"",
        )
        .unwrap()
        .status
    };

    // rita may read both repositories, but a token from team's realm is for team.
    let (_, for_team) = realm(team, Some(&rita), &["repository:app:pull"]);
    assert_eq!(get(team, &for_team), 200);
    assert_eq!(get(other, &for_team), 401, "a team token opened other");

    // Several scopes: each is granted only as far as the user may.
    let (_, two) = realm(
        team,
        Some(&rita),
        &["repository:app:pull", "repository:app:push"],
    );
    assert_eq!(get(team, &two), 200);
    assert!(
        DENIED.contains(&put(team, &two)),
        "a reader pushed with two scopes"
    );
    let (_, other_image) = realm(
        team,
        Some(&rita),
        &["repository:app:pull", "repository:other-image:push"],
    );
    assert!(DENIED.contains(&put(team, &other_image)));

    // `*` is every action the user has, not more: pat pushes, does not delete.
    let (_, star) = realm(team, Some(&pat), &["repository:app:*"]);
    assert_eq!(put(team, &star), 201);
    assert!(DENIED.contains(&delete(team, &star)), "* gave pat delete");
    assert!(
        DENIED.contains(&put(other, &star)),
        "pat's team token pushed to other"
    );
    let (_, pat_other) = realm(other, Some(&pat), &["repository:app:*"]);
    assert!(
        DENIED.contains(&get(other, &pat_other)),
        "pat reads nothing in other"
    );
    let (_, root_star) = realm(team, Some(&root()), &["repository:app:*"]);
    assert_eq!(
        delete(team, &root_star),
        202,
        "an admin's * includes delete"
    );

    // A pull token for one image is not one for another image of the same repository.
    let (_, app_only) = realm(team, Some(&rita), &["repository:app:pull"]);
    let h = format!("Bearer {app_only}");
    let r = request(
        team,
        "GET",
        "/v2/other-image/tags/list",
        &[("Authorization", &h)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
}
