//! OpenID Connect against a real provider (the npm package `oidc-provider`, started by the
//! test): CI jobs logging in with their ID tokens as the password (claims matched as globs;
//! a wrong audience, another repository, an expired, a tampered token and one signed with a
//! key the issuer no longer publishes all refused; a rotated key taken at once; an issuer that
//! cannot be reached is 503, never 401), skopeo pushing with such a token; and people signing
//! in to the web UI by the authorization-code flow with PKCE, their groups mapped to roles,
//! the state checked, logout, and the admin API telling where each user comes from.

use std::time::Duration;

use berth_tests::core::Core;
use berth_tests::http::{basic, request};
use berth_tests::image::write_layout;
use berth_tests::oidc::{Browser, Provider};
use berth_tests::postgres::Postgres;
use berth_tests::registry::push_blob_as;
use berth_tests::s3::S3Server;
use berth_tests::tools::skopeo;
use berth_tests::webdriver;

/// A core whose `auth.oidc` trusts `issuer`: single sign-on for people through client
/// `berth`, and CI jobs of `org/*` repositories (audience `berth-ci` or `berth-ci-short`).
fn core_for(issuer: &str) -> Core {
    core_on(issuer, "")
}

/// [`core_for`] with `stores` (`metadata:` and `blobs:` lines of `storage`) shared.
fn core_on(issuer: &str, stores: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client.secret");
    std::fs::write(&secret, "berth-client-secret\n").unwrap();
    let config = format!(
        "storage:\n  root: {data}\n{stores}main: {{ listen: 127.0.0.1:0 }}\n\
         auth:\n  login_attempts: 20\n\
         \x20 oidc:\n    issuer: {issuer}\n    client_id: berth\n    client_secret_file: {secret}\n\
         \x20   scopes: [openid, profile, groups]\n    username_claim: preferred_username\n\
         \x20   groups_claim: groups\n    group_roles: {{ devs: [devs] }}\n    timeout: 2s\n\
         \x20   workload:\n\
         \x20     - {{ issuer: {issuer}, audience: berth-ci, claims: {{ repository: \"org/*\" }}, roles: [ci-push] }}\n\
         \x20     - {{ issuer: {issuer}, audience: berth-ci-short, claims: {{ repository: \"org/*\" }}, roles: [ci-push] }}\n\
         \x20 users:\n    - {{ name: root, password_hash: \"{root}\", roles: [admins] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: ci-push, privileges: [{{ repositories: hosted, actions: [read, write] }}] }}\n\
         \x20   - {{ name: devs, privileges: [{{ repositories: hosted, actions: [read] }}] }}\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data = dir.path().join("data").display(),
        secret = secret.display(),
        root = berth_tests::core::hash_password("root-pw"),
    );
    Core::start_in(dir, &config)
}

/// The realm's answer for `user:pass` asking pull and push on `team/app`: status, token, code.
fn token(addr: &str, user: &str, pass: &str) -> (u16, String, String) {
    let r = request(
        addr,
        "GET",
        "/v2/token?service=berth&scope=repository:team/app:pull,push",
        &[("Authorization", &basic(user, pass))],
        b"",
    )
    .unwrap();
    let token = r.json()["token"].as_str().unwrap_or("").to_owned();
    (r.status, token, r.code())
}

fn admin_get(core: &Core, path: &str) -> serde_json::Value {
    let root = basic("root", "root-pw");
    let r = request(&core.main, "GET", path, &[("Authorization", &root)], b"").unwrap();
    assert_eq!(r.status, 200, "{path}");
    r.json()
}

const ORG_JOB: &str = "repo:org/app:ref:refs/heads/main";
const EVIL_JOB: &str = "repo:evil/app:ref:refs/heads/main";

#[test]
fn ci_jobs_log_in_with_their_id_tokens() {
    let port = Provider::port();
    let core = core_for(&format!("http://127.0.0.1:{port}"));
    let mut provider = Provider::start("127.0.0.1", port, "key-1", &[]);
    let addr = core.connector("hosted").to_owned();

    let job = provider.id_token("berth-ci", ORG_JOB);
    let (status, bearer, _) = token(&addr, "ci", &job);
    assert_eq!(status, 200, "{}", core.log());
    let pushed = push_blob_as(
        &addr,
        "team/app",
        "",
        &format!("Bearer {bearer}"),
        b"from ci",
    );
    assert_eq!(pushed.status, 201);
    // It is for clients: the UI's login form does not open a session with it.
    let form = format!("user=ci&password={job}");
    let ct = [("Content-Type", "application/x-www-form-urlencoded")];
    let ui = request(&core.main, "POST", "/ui/login", &ct, form.as_bytes()).unwrap();
    assert_eq!(ui.status, 401, "{}", String::from_utf8_lossy(&ui.body));
    skopeo_pushes_with(&addr, &job);

    // Another repository, another audience, a tampered signature: refused, 401.
    let evil = provider.id_token("berth-ci", EVIL_JOB);
    let elsewhere = provider.id_token("someone-else", ORG_JOB);
    let (head, sig) = job.rsplit_once('.').unwrap();
    let tampered = format!("{head}.{}", sig.chars().rev().collect::<String>());
    for (what, t) in [
        ("evil", &evil),
        ("audience", &elsewhere),
        ("tampered", &tampered),
    ] {
        assert_eq!(token(&addr, "ci", t).0, 401, "{what}");
    }
    // An expired token (the short client's live one second).
    let short = provider.id_token("berth-ci-short", ORG_JOB);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(token(&addr, "ci", &short).0, 401, "expired");

    // The admin API lists the job as an OIDC user with its roles.
    let listed = berth_tests::edge::wait_for(|| {
        admin_get(&core, "/api/v1/directory-users")
            .as_array()?
            .iter()
            .find(|u| u["name"] == ORG_JOB)
            .cloned()
    })
    .expect("the job is listed");
    assert_eq!(listed["source"], "oidc", "{listed}");
    assert_eq!(listed["roles"], serde_json::json!(["ci-push"]), "{listed}");

    // The issuer rotates its key: a token signed with the new one passes at once (the keys are
    // fetched again, at most every 10 s), one signed with the withdrawn key no longer does.
    std::thread::sleep(Duration::from_secs(10));
    provider.rotate("key-2");
    let rotated = provider.id_token("berth-ci", ORG_JOB);
    assert_eq!(token(&addr, "ci", &rotated).0, 200, "{}", core.log());
    assert_eq!(token(&addr, "ci", &job).0, 401, "the withdrawn key");

    // An issuer that cannot be reached: 503 on a core that never saw it, the admin carries on.
    provider.stop();
    let fresh = core_for(&provider.issuer());
    let fresh_addr = fresh.connector("hosted");
    let (status, _, code) = token(fresh_addr, "ci", &rotated);
    assert_eq!(
        (status, code.as_str()),
        (503, "UNAVAILABLE"),
        "{}",
        fresh.log()
    );
    assert_eq!(token(fresh_addr, "root", "root-pw").0, 200);
    for t in [&job, &rotated] {
        assert!(!core.log().contains(t.as_str()), "a token in the log");
    }
}

/// `skopeo copy` with the job's ID token as the password pushes an image.
fn skopeo_pushes_with(addr: &str, jwt: &str) {
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    write_layout(&img, "v1", &[("linux", "amd64")], &[30_000], 4);
    let layout = format!("oci:{}:v1", img.display());
    let creds = format!("ci:{jwt}");
    let out = skopeo()
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &layout,
        ])
        .arg(format!("docker://{addr}/team/app:ci"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn people_sign_in_to_the_ui_at_the_provider() {
    let port = Provider::port();
    let core = core_for(&format!("http://127.0.0.1:{port}"));
    let ui = format!("http://{}", core.main);
    let callback = format!("{ui}/ui/oidc/callback");
    let _provider = Provider::start("127.0.0.1", port, "key-1", std::slice::from_ref(&callback));

    let login = request(&core.main, "GET", "/ui/login", &[], b"").unwrap();
    assert!(String::from_utf8_lossy(&login.body).contains("/ui/oidc/login"));

    // alice (group devs) signs in: the provider sends her back, a session opens.
    let browser = Browser::new();
    let back = browser.sign_in(&format!("{ui}/ui/oidc/login"), "alice", &callback);
    let done = browser.get(&back);
    assert_eq!(done.status, 200, "{}\n{}", done.body, core.log());
    assert!(done.headers.contains("berth_session="), "{}", done.headers);
    assert!(
        done.body.contains("http-equiv=\"refresh\""),
        "{}",
        done.body
    );
    let home = browser.get(&format!("{ui}/"));
    let readable = "/ui/repository?name=hosted";
    assert!(
        home.body.contains("alice") && home.body.contains(readable),
        "{}",
        home.body
    );

    // Coming back again with the same code, or with a state not begun here: refused.
    assert_eq!(browser.get(&back).status, 401, "a code is good once");
    let forged = Browser::new().get(&format!("{ui}/ui/oidc/callback?code=x&state=y"));
    assert_eq!(forged.status, 401);

    let listed = berth_tests::edge::wait_for(|| {
        admin_get(&core, "/api/v1/directory-users")
            .as_array()?
            .iter()
            .find(|u| u["name"] == "alice")
            .cloned()
    })
    .expect("alice is listed");
    assert_eq!(listed["source"], "oidc", "{listed}");
    assert_eq!(listed["roles"], serde_json::json!(["devs"]), "{listed}");
    // The admin page shows her too, with where she comes from and her roles.
    let admin = Browser::new();
    admin.post(&format!("{ui}/ui/login"), "user=root&password=root-pw");
    let page = admin.get(&format!("{ui}/ui/admin")).body;
    let row = page
        .lines()
        .find(|l| l.contains("<td>alice</td>"))
        .unwrap_or_else(|| panic!("alice not on the admin page: {page}"));
    assert!(row.contains("<td>oidc</td><td>devs</td>"), "{row}");

    // bob (readers: no role here) signs in too, and sees nothing he may not read.
    let bob = Browser::new();
    let back = bob.sign_in(&format!("{ui}/ui/oidc/login"), "bob", &callback);
    assert_eq!(bob.get(&back).status, 200);
    let page = bob.get(&format!("{ui}/")).body;
    assert!(page.contains("bob") && !page.contains(readable), "{page}");

    // Logout ends alice's session.
    browser.post(&format!("{ui}/ui/logout"), "");
    let after = browser.get(&format!("{ui}/"));
    assert!(!after.body.contains("alice"), "{}", after.body);
}

/// The same sign-on in Chromium, the provider on another site (`localhost` against the UI's
/// `127.0.0.1`): the browser comes back cross-site, and the `SameSite=Strict` session cookie
/// still reaches the first page (the callback moves on by a same-site navigation).
#[test]
fn chromium_signs_in_across_sites() {
    assert!(
        webdriver::available(),
        "chromium and chromedriver are needed (.ci/run installs them)"
    );
    let port = Provider::port();
    let core = core_for(&format!("http://localhost:{port}"));
    let ui = format!("http://{}", core.main);
    let callback = format!("{ui}/ui/oidc/callback");
    let _provider = Provider::start("localhost", port, "key-1", std::slice::from_ref(&callback));
    let b = webdriver::Browser::start();
    b.goto(&format!("{ui}/ui/login"));
    b.click("#sso");
    let at_provider =
        berth_tests::edge::wait_for(|| b.url().contains("/interaction/").then_some(()));
    assert!(at_provider.is_some(), "not at the provider: {}", b.url());
    b.type_into("input[name=login]", "alice");
    b.type_into("input[name=password]", "any");
    b.click("button[type=submit]");
    let home = berth_tests::edge::wait_for(|| {
        let text = b.body_text();
        (b.url() == format!("{ui}/") && text.contains("alice")).then_some(text)
    });
    assert!(
        home.is_some(),
        "not signed in at {}: {}",
        b.url(),
        b.body_text()
    );
}

/// Two cores on one PostgreSQL and one bucket: a sign-on begun on one is finished by the
/// other (what it needs travels with the browser), the session is good on both, and a job's
/// registry token from one realm pushes through the other.
#[test]
fn any_core_finishes_a_sign_on_and_honours_a_job() {
    let (pg, s3) = (Postgres::start(), S3Server::start());
    let stores = format!(
        "  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n",
        pg.url,
        s3.config("registry")
    );
    let port = Provider::port();
    let issuer = format!("http://127.0.0.1:{port}");
    let (a, b) = (core_on(&issuer, &stores), core_on(&issuer, &stores));
    let callback = format!("http://{}/ui/oidc/callback", a.main);
    let provider = Provider::start("127.0.0.1", port, "key-1", std::slice::from_ref(&callback));

    // The provider sends the browser back to a's name; b answers it (one name, many cores).
    let browser = Browser::new();
    let back = browser.sign_in(
        &format!("http://{}/ui/oidc/login", a.main),
        "alice",
        &callback,
    );
    let done = browser.get_via(&back, &a.main, &b.main);
    assert_eq!(done.status, 200, "{}\n{}", done.body, b.log());
    let home = browser.get(&format!("http://{}/", a.main));
    assert!(
        home.body.contains("alice"),
        "b's session is not good on a: {}",
        home.body
    );

    let job = provider.id_token("berth-ci", ORG_JOB);
    let (status, bearer, _) = token(b.connector("hosted"), "ci", &job);
    assert_eq!(status, 200);
    let pushed = push_blob_as(
        a.connector("hosted"),
        "team/app",
        "",
        &format!("Bearer {bearer}"),
        b"via b",
    );
    assert_eq!(pushed.status, 201);
}

/// Mistakes in `auth.oidc` stop the start, naming the key.
#[test]
fn oidc_config_errors_name_the_key() {
    let rule = "{ issuer: \"https://token.actions.githubusercontent.com\", audience: berth";
    for (oidc, key) in [
        (format!("{{ workload: [{rule}, roles: [ci] }}] }}"), "auth.oidc.workload[0].claims"),
        (
            format!("{{ workload: [{rule}, claims: {{ repository: \"org/*\" }}, roles: [ghost] }}] }}"),
            "auth.oidc.workload[0].roles",
        ),
        ("{ issuer: \"https://id.example\" }".to_owned(), "auth.oidc.client_id"),
        (
            "{ issuer: \"id.example\", client_id: berth }".to_owned(),
            "auth.oidc.issuer",
        ),
        (
            "{ issuer: \"https://id.example\", client_id: berth, client_secret_file: /nonexistent/secret }"
                .to_owned(),
            "auth.oidc.client_secret_file",
        ),
        (
            "{ issuer: \"https://id.example\", client_id: berth, group_roles: { devs: [ghost] } }"
                .to_owned(),
            "auth.oidc.group_roles",
        ),
    ] {
        berth_tests::core::assert_refused(&format!("auth:\n  oidc: {oidc}\n  roles: [{{ name: ci }}]\nrepositories: []\n"), key);
    }
}

/// A CI platform shaped like GitHub Actions: its discovery document names no authorization
/// endpoint (nobody signs in there), and its tokens are still taken; a config with workload
/// rules alone.
#[test]
fn a_github_shaped_token_service_is_enough() {
    let port = Provider::port();
    let issuer = Provider::start_ci_issuer(port, "gh-1");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage:\n  root: {data}\nmain: {{ listen: 127.0.0.1:0 }}\n\
         auth:\n  oidc:\n    workload:\n\
         \x20     - {{ issuer: \"{iss}\", audience: berth, claims: {{ repository: \"org/*\", ref: refs/heads/main }}, roles: [ci-push] }}\n\
         \x20 roles:\n    - {{ name: ci-push, privileges: [{{ repositories: hosted, actions: [read, write] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data = dir.path().join("data").display(),
        iss = issuer.issuer(),
    );
    let core = Core::start_in(dir, &config);
    let addr = core.connector("hosted");
    let job = issuer.ci_token("berth", "org/app", 300);
    let (status, bearer, _) = token(addr, "ci", &job);
    assert_eq!(status, 200, "{}", core.log());
    let pushed = push_blob_as(addr, "team/app", "", &format!("Bearer {bearer}"), b"gh");
    assert_eq!(pushed.status, 201);
    assert_eq!(
        token(addr, "ci", &issuer.ci_token("berth", "evil/app", 300)).0,
        401
    );
    assert_eq!(
        token(addr, "ci", &issuer.ci_token("other", "org/app", 300)).0,
        401
    );
}
