//! LDAP logins against a real OpenLDAP server (Debian's slapd, started by the test): over
//! ldaps with a test CA and over StartTLS; groups mapped to roles and read again at the next
//! token; local users winning a name clash and working while the directory is down (503 for
//! directory users, never 401); the login back-off; no password in the log; skopeo pushing
//! and pulling with a directory password; two cores on one PostgreSQL honouring each other's
//! directory tokens and listing the same directory users.

use berth_tests::core::Core;
use berth_tests::http::{basic, request};
use berth_tests::image::write_layout;
use berth_tests::ldap::Slapd;
use berth_tests::postgres::Postgres;
use berth_tests::registry::push_blob_as;
use berth_tests::s3::S3Server;
use berth_tests::tools::skopeo;

const BIND_PW: &str = "berth-bind-pw";

/// bob is in devs (push), carol in readers (pull), eve in no group; `root` also exists in
/// the directory with another password, and the local root must win.
const PEOPLE: &str = "\
dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people\n\n\
dn: ou=services,dc=example,dc=com\nobjectClass: organizationalUnit\nou: services\n\n\
dn: ou=groups,dc=example,dc=com\nobjectClass: organizationalUnit\nou: groups\n\n\
dn: cn=berth,ou=services,dc=example,dc=com\nobjectClass: person\ncn: berth\nsn: service\nuserPassword: berth-bind-pw\n\n\
dn: uid=bob,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: B\nuserPassword: bob-pw\n\n\
dn: uid=carol,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: carol\ncn: Carol\nsn: C\nuserPassword: carol-pw\n\n\
dn: uid=eve,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: eve\ncn: Eve\nsn: E\nuserPassword: eve-pw\n\n\
dn: uid=root,ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: root\ncn: Root\nsn: R\nuserPassword: ldap-root-pw\n\n\
dn: cn=devs,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: devs\nmember: uid=bob,ou=people,dc=example,dc=com\nmember: cn=nobody,dc=example,dc=com\n\n\
dn: cn=readers,ou=groups,dc=example,dc=com\nobjectClass: groupOfNames\ncn: readers\nmember: uid=carol,ou=people,dc=example,dc=com\n";

fn core_for(slapd: &Slapd, url: &str, start_tls: bool) -> Core {
    core_on(slapd, url, start_tls, "")
}

/// [`core_for`] with `stores` (`metadata:` and `blobs:` lines of `storage`) shared.
fn core_on(slapd: &Slapd, url: &str, start_tls: bool, stores: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("bind.pw");
    std::fs::write(&pw, format!("{BIND_PW}\n")).unwrap();
    let config = format!(
        "storage:\n  root: {data}\n{stores}main: {{ listen: 127.0.0.1:0 }}\n\
         auth:\n  login_attempts: 7\n\
         \x20 ldap:\n    url: {url}\n    start_tls: {start_tls}\n\
         \x20   bind_dn: \"cn=berth,ou=services,dc=example,dc=com\"\n    bind_password_file: {pw}\n\
         \x20   user_base: \"ou=people,dc=example,dc=com\"\n    user_filter: \"(uid={{user}})\"\n\
         \x20   group_base: \"ou=groups,dc=example,dc=com\"\n    group_filter: \"(member={{dn}})\"\n\
         \x20   group_roles:\n      \"cn=devs,ou=groups,dc=example,dc=com\": [devs]\n\
         \x20     \"cn=readers,ou=groups,dc=example,dc=com\": [readers]\n\
         \x20   ca_file: {ca}\n    timeout: 2s\n\
         \x20 users:\n    - {{ name: root, password_hash: \"{root}\", roles: [admins] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: devs, privileges: [{{ repositories: hosted, actions: [read, write] }}] }}\n\
         \x20   - {{ name: readers, privileges: [{{ repositories: hosted, actions: [read] }}] }}\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        data = dir.path().join("data").display(),
        pw = pw.display(),
        ca = slapd.ca().display(),
        root = berth_tests::core::hash_password("root-pw"),
    );
    Core::start_in(dir, &config)
}

/// The realm's answer for `user:pass` asking pull and push on `hosted`'s `team/app`: status,
/// the token and the OCI error code.
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

/// A blob push with the token, its status.
fn push_with(addr: &str, token: &str, data: &[u8]) -> u16 {
    push_blob_as(addr, "team/app", "", &format!("Bearer {token}"), data).status
}

/// An admin API GET on `core`'s main port as the local root.
fn admin_get(core: &Core, path: &str) -> serde_json::Value {
    let root = basic("root", "root-pw");
    let r = request(&core.main, "GET", path, &[("Authorization", &root)], b"").unwrap();
    assert_eq!(r.status, 200, "{path}");
    r.json()
}

/// skopeo with `args`: whether it succeeded, and what it said.
fn skopeo_with(args: &[&str]) -> (bool, String) {
    let out = skopeo().args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ldaps_logins_map_groups_to_roles_and_outlive_a_down_directory() {
    let mut slapd = Slapd::start(PEOPLE);
    let core = core_for(&slapd, &slapd.ldaps_url(), false);
    let addr = core.connector("hosted").to_owned();
    groups_give_roles_and_nothing_else_passes(&core, &addr);
    clients_and_the_ui_take_directory_passwords(&core, &addr);

    // bob leaves devs: the next token no longer pushes, however recently bob logged in.
    slapd.modify(
        "dn: cn=devs,ou=groups,dc=example,dc=com\nchangetype: modify\ndelete: member\n\
         member: uid=bob,ou=people,dc=example,dc=com\n",
    );
    let (status, bob_now, _) = token(&addr, "bob", "bob-pw");
    assert_eq!(status, 200);
    assert_ne!(push_with(&addr, &bob_now, b"bob again"), 201);

    outages_are_503_and_local_users_carry_on(&core, &addr, &mut slapd);

    // The back-off counts directory guesses too.
    let statuses: Vec<u16> = (0..8).map(|_| token(&addr, "eve", "guess").0).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let log = core.log();
    for secret in [BIND_PW, "rotated-bind-pw", "bob-pw", "carol-pw", "root-pw"] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// bob (devs) pushes, carol (readers) does not; bad names and passwords are 401; the admin
/// API shows where users come from; the local root wins its name.
fn groups_give_roles_and_nothing_else_passes(core: &Core, addr: &str) {
    let (status, bob, _) = token(addr, "bob", "bob-pw");
    assert_eq!(status, 200);
    assert_eq!(push_with(addr, &bob, b"from bob"), 201);
    let (status, carol, _) = token(addr, "carol", "carol-pw");
    assert_eq!(status, 200);
    assert_ne!(push_with(addr, &carol, b"from carol"), 201);
    // Wrong password, unknown user, an injected filter, an empty password: 401, all of them.
    for (user, pass) in [
        ("bob", "wrong"),
        ("nobody", "x"),
        ("*", "bob-pw"),
        ("bob)(uid=*", "bob-pw"),
        ("bob", ""),
    ] {
        assert_eq!(token(addr, user, pass).0, 401, "{user}:{pass}");
    }
    let listed = berth_tests::edge::wait_for(|| {
        let all = admin_get(core, "/api/v1/directory-users");
        let found = all.as_array()?.iter().find(|u| u["name"] == "bob")?.clone();
        Some((all.clone(), found))
    });
    let (all, bob_entry) = listed.expect("bob listed as a directory user");
    assert_eq!(bob_entry["source"], "ldap", "{all}");
    assert_eq!(bob_entry["roles"], serde_json::json!(["devs"]), "{all}");
    let users = admin_get(core, "/api/v1/users");
    assert_eq!(users[0]["source"], "local", "{users}");
    assert_eq!(token(addr, "root", "root-pw").0, 200);
    assert_eq!(token(addr, "root", "ldap-root-pw").0, 401);
}

/// skopeo pushes and pulls with directory passwords, straight at the connector; bob signs in
/// to the web UI, his session holding his roles.
fn clients_and_the_ui_take_directory_passwords(core: &Core, addr: &str) {
    let work = tempfile::tempdir().unwrap();
    let img = work.path().join("img");
    write_layout(&img, "v1", &[("linux", "amd64")], &[50_000], 9);
    let layout = format!("oci:{}:v1", img.display());
    let remote = format!("docker://{addr}/team/app:v1");
    let push = ["copy", "--dest-tls-verify=false", "--dest-creds"];
    let (ok, said) = skopeo_with(&[&push[..], &["bob:bob-pw", &layout, &remote]].concat());
    assert!(ok, "{said}");
    let inspect = ["inspect", "--tls-verify=false", "--creds", "carol:carol-pw"];
    let (ok, said) = skopeo_with(&[&inspect[..], &[remote.as_str()]].concat());
    assert!(ok, "{said}");
    let other = format!("docker://{addr}/team/app:v2");
    let (ok, _) = skopeo_with(&[&push[..], &["carol:carol-pw", &layout, &other]].concat());
    assert!(!ok, "a reader pushed");

    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let body = b"user=bob&password=bob-pw";
    let r = request(&core.main, "POST", "/ui/login", &form, body).unwrap();
    assert_eq!(r.status, 303, "{}", String::from_utf8_lossy(&r.body));
    let set = r.header("set-cookie").unwrap();
    assert!(set.contains("Max-Age=3600"), "{set}");
    let cookie = [("Cookie", set.split(';').next().unwrap())];
    let home = request(&core.main, "GET", "/", &cookie, b"").unwrap();
    let page = String::from_utf8_lossy(&home.body);
    assert!(
        home.status == 200 && page.contains("bob") && page.contains("hosted"),
        "{page}"
    );
    let account = request(&core.main, "GET", "/ui/account", &cookie, b"").unwrap();
    assert_eq!(
        account.status, 403,
        "a directory account is managed in the directory"
    );
}

/// The directory down, then its service password rotated: 503 for its users (not 401), the
/// local admin carries on, and a new password file is taken without a restart.
fn outages_are_503_and_local_users_carry_on(core: &Core, addr: &str, slapd: &mut Slapd) {
    slapd.stop();
    let (status, _, code) = token(addr, "carol", "carol-pw");
    assert_eq!((status, code.as_str()), (503, "UNAVAILABLE"));
    assert_eq!(token(addr, "root", "root-pw").0, 200);
    slapd.resume();
    assert_eq!(token(addr, "carol", "carol-pw").0, 200);
    slapd.modify(
        "dn: cn=berth,ou=services,dc=example,dc=com\nchangetype: modify\nreplace: userPassword\n\
         userPassword: rotated-bind-pw\n",
    );
    assert_eq!(token(addr, "carol", "carol-pw").0, 503);
    let pw_file = core.config_path().with_file_name("bind.pw");
    std::fs::write(&pw_file, "rotated-bind-pw\n").unwrap();
    assert_eq!(token(addr, "carol", "carol-pw").0, 200);
}

#[test]
fn start_tls_logins_and_a_config_that_names_the_wrong_key() {
    let slapd = Slapd::start(PEOPLE);
    let core = core_for(&slapd, &slapd.ldap_url(), true);
    let addr = core.connector("hosted").to_owned();
    let (status, bob, _) = token(&addr, "bob", "bob-pw");
    assert_eq!(status, 200);
    assert_eq!(push_with(&addr, &bob, b"over starttls"), 201);
    assert_eq!(token(&addr, "bob", "nope").0, 401);

    // start_tls on an ldaps:// URL, and a role no one defined: refused at start, by key.
    for (ldap, key) in [
        (
            format!("{{ url: \"{}\", start_tls: true, user_base: \"ou=people,dc=example,dc=com\" }}", slapd.ldaps_url()),
            "auth.ldap.start_tls",
        ),
        (
            "{ url: \"ldap://localhost:1\", user_base: \"o=x\", group_roles: { \"cn=g\": [ghost] } }".to_owned(),
            "auth.ldap.group_roles",
        ),
    ] {
        berth_tests::core::assert_refused(&format!("auth:\n  ldap: {ldap}\nrepositories: []\n"), key);
    }
}

#[test]
fn a_directory_login_on_one_core_is_good_on_another() {
    let slapd = Slapd::start(PEOPLE);
    let (pg, s3) = (Postgres::start(), S3Server::start());
    let stores = format!(
        "  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n",
        pg.url,
        s3.config("registry")
    );
    let a = core_on(&slapd, &slapd.ldaps_url(), false, &stores);
    let b = core_on(&slapd, &slapd.ldaps_url(), false, &stores);
    // A token from a's realm carries bob's roles: b honours it with no record of its own.
    let (status, bob, _) = token(a.connector("hosted"), "bob", "bob-pw");
    assert_eq!(status, 200);
    assert_eq!(push_with(b.connector("hosted"), &bob, b"pushed on b"), 201);
    let (_, carol, _) = token(a.connector("hosted"), "carol", "carol-pw");
    assert_ne!(push_with(b.connector("hosted"), &carol, b"carol on b"), 201);
    // The login made on a is listed by b's admin API.
    let listed = berth_tests::edge::wait_for(|| {
        admin_get(&b, "/api/v1/directory-users")
            .as_array()?
            .iter()
            .any(|u| u["name"] == "bob" && u["roles"] == serde_json::json!(["devs"]))
            .then_some(())
    });
    assert!(listed.is_some(), "bob's login on a is not listed on b");
}
