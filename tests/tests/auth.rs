//! Access control against the real binary: Basic and bearer flows, scopes that cannot be
//! widened, expiry, anonymous pull, rate-limited logins, the admin API, the audit log, and
//! docker / podman / skopeo logging in through the edge.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use berth_tests::core::Core;
use berth_tests::edge::{issue, make_ca, Edge};
use berth_tests::http::{self, request};
use berth_tests::image::write_layout;
use berth_tests::registry::push_blob_as;
use berth_tests::tools::{podman, run, skopeo, Dockerd};

fn hash(password: &str) -> String {
    berth_tests::core::hash_password(password)
}

/// alice may read/write/delete everywhere, bob may read, root administers; `public` allows
/// anonymous pulls.
fn secured_core(extra_auth: &str, trusted: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n{trusted}\
         auth:\n{extra_auth}  users:\n\
         \x20   - {{ name: alice, password_hash: \"{}\", roles: [developers] }}\n\
         \x20   - {{ name: bob, password_hash: \"{}\", roles: [readers] }}\n\
         \x20   - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20   - {{ name: dave, password_hash: \"{}\", roles: [group-only] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: developers, privileges: [{{ repositories: \"*\", actions: [read, write, delete] }}] }}\n\
         \x20   - {{ name: readers, privileges: [{{ repositories: \"*\", actions: [read] }}] }}\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: group-only, privileges: [{{ repositories: \"all\", actions: [read, write] }}] }}\n\
         repositories:\n\
         \x20 - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: public, kind: hosted, anonymous_pull: true, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: all, kind: group, members: [hosted, public], writable_member: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display(),
        hash("alice-pw"),
        hash("bob-pw"),
        hash("root-pw"),
        hash("dave-pw"),
    );
    Core::start_in(dir, &config)
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn token(addr: &str, auth: Option<&str>, scope: &str) -> (u16, String) {
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
    let r = request(
        addr,
        "GET",
        &format!("/v2/token?service=berth&scope={scope}"),
        &headers,
        b"",
    )
    .unwrap();
    (
        r.status,
        r.json()["token"].as_str().unwrap_or("").to_owned(),
    )
}

#[test]
fn basic_bearer_scopes_expiry_anonymous_and_admin() {
    let core = secured_core("  token_ttl: 2s\n", "");
    let hosted = core.connector("hosted").to_owned();
    let public = core.connector("public").to_owned();

    // Anonymous: a challenge pointing at this port's token realm.
    let r = request(&hosted, "GET", "/v2/", &[], b"").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(format!("Bearer realm=\"http://{hosted}/v2/token\",service=\"berth\"").as_str())
    );

    // Basic works on every request; writes need write.
    let alice = basic("alice", "alice-pw");
    assert_eq!(
        push_blob_as(&hosted, "app", "", &alice, b"by alice").status,
        201
    );
    let bob = basic("bob", "bob-pw");
    let r = push_blob_as(&hosted, "app", "", &bob, b"by bob");
    assert_eq!((r.status, r.code().as_str()), (403, "DENIED"));
    let r = request(
        &hosted,
        "GET",
        &format!("/v2/app/blobs/{}", http::digest(b"by alice")),
        &[("Authorization", &bob)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);

    // Bearer: the token holds only what was granted.
    let (status, t) = token(&hosted, Some(&bob), "repository:app:pull,push");
    assert_eq!(status, 200);
    let bearer = format!("Bearer {t}");
    let r = push_blob_as(&hosted, "app", "", &bearer, b"bob with a token");
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap_or("")
        .contains("scope=\"repository:app:pull,push\""));
    // Editing the token to widen the grant breaks its signature.
    let (body, sig) = t.split_once('.').unwrap();
    let mut claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap(),
    )
    .unwrap();
    claims["access"][0]["actions"] = serde_json::json!(["pull", "push"]);
    let forged = format!(
        "{}.{sig}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_eq!(
        push_blob_as(&hosted, "app", "", &format!("Bearer {forged}"), b"forged").status,
        401
    );
    // alice's token allows the push; after token_ttl it is refused.
    let (_, t) = token(&hosted, Some(&alice), "repository:app:pull,push");
    assert_eq!(
        push_blob_as(
            &hosted,
            "app",
            "",
            &format!("Bearer {t}"),
            b"alice with a token"
        )
        .status,
        201
    );
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(
        push_blob_as(&hosted, "app", "", &format!("Bearer {t}"), b"too late").status,
        401
    );
    // A token is bound to its repository: one for `app` does not open `other`.
    let (_, t) = token(&hosted, Some(&alice), "repository:app:pull");
    let r = request(
        &hosted,
        "GET",
        "/v2/other/tags/list",
        &[("Authorization", &format!("Bearer {t}"))],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401);

    // Anonymous pull where allowed, never push; nothing on the private repository.
    assert_eq!(
        push_blob_as(&public, "lib", "", &alice, b"public layer").status,
        201
    );
    let r = request(
        &public,
        "GET",
        &format!("/v2/lib/blobs/{}", http::digest(b"public layer")),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let (status, anon) = token(&public, None, "repository:lib:pull,push");
    assert_eq!(status, 200);
    assert_eq!(
        push_blob_as(
            &public,
            "lib",
            "",
            &format!("Bearer {anon}"),
            b"anonymous push"
        )
        .status,
        401
    );
    let r = request(
        &hosted,
        "GET",
        &format!("/v2/app/blobs/{}", http::digest(b"by alice")),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401);

    // Groups: reading needs read on the group; pushing through it needs write on its
    // writable member, which dave lacks.
    let all = core.connector("all").to_owned();
    let dave = basic("dave", "dave-pw");
    let r = request(
        &all,
        "GET",
        &format!("/v2/lib/blobs/{}", http::digest(b"public layer")),
        &[("Authorization", &dave)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        push_blob_as(&all, "lib", "", &dave, b"dave through the group").status,
        403
    );
    assert_eq!(
        push_blob_as(&all, "lib", "", &alice, b"alice through the group").status,
        201
    );
    let r = request(
        &hosted,
        "GET",
        &format!("/v2/lib/blobs/{}", http::digest(b"alice through the group")),
        &[("Authorization", &alice)],
        b"",
    )
    .unwrap();
    assert_eq!(
        r.status, 200,
        "the push through the group did not land in the writable member"
    );
    let (_, t_dave) = token(&all, Some(&dave), "repository:lib:pull,push");
    assert_eq!(
        push_blob_as(
            &all,
            "lib",
            "",
            &format!("Bearer {t_dave}"),
            b"dave with a token"
        )
        .status,
        401
    );

    // The admin API wants an admin; health does not.
    assert_eq!(
        request(&core.main, "GET", "/berth/health", &[], b"")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        request(&core.main, "GET", "/berth/api/v1/repositories", &[], b"")
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        request(
            &core.main,
            "GET",
            "/berth/api/v1/repositories",
            &[("Authorization", &alice)],
            b""
        )
        .unwrap()
        .status,
        401
    );
    assert_eq!(
        request(
            &core.main,
            "GET",
            "/berth/api/v1/repositories",
            &[("Authorization", &basic("root", "root-pw"))],
            b""
        )
        .unwrap()
        .status,
        200
    );

    // Audit lines name who changed what; credentials and tokens never reach the log.
    let r = request(
        &hosted,
        "DELETE",
        &format!("/v2/app/blobs/{}", http::digest(b"by alice")),
        &[("Authorization", &alice)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 202);
    let log = core.log();
    assert!(
        log.lines()
            .any(|l| l.contains("audit") && l.contains("alice") && l.contains("DELETE")),
        "{log}"
    );
    assert!(
        !log.contains("alice-pw") && !log.contains(&t),
        "secrets in the log"
    );
}

#[test]
fn failed_logins_slow_guessing_without_locking_out_real_users() {
    let core = secured_core("  login_attempts: 3\n  login_max_delay: 2s\n", "");
    let hosted = core.connector("hosted").to_owned();
    let get = |user: &str, pass: &str| {
        request(
            &hosted,
            "GET",
            "/v2/",
            &[("Authorization", &basic(user, pass))],
            b"",
        )
        .unwrap()
    };
    assert_eq!(get("bob", "bob-pw").status, 200, "bob signs in first");
    // A few typos, then the right password: let in (audit: this once locked alice out).
    assert_eq!(get("alice", "typo").status, 401);
    assert_eq!(get("alice", "typo2").status, 401);
    assert_eq!(get("alice", "alice-pw").status, 200);
    // A guesser at the same address rotating user names: slowed, with Retry-After.
    assert_eq!(get("mallory", "guess0").status, 401);
    let mut waits = Vec::new();
    for i in 1..6 {
        let r = get(&format!("user{i}"), "guess");
        assert_eq!((r.status, r.code().as_str()), (429, "TOOMANYREQUESTS"));
        let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=2).contains(&after), "Retry-After {after}");
        waits.push(after);
    }
    // Clients whose password was verified a moment ago keep working meanwhile.
    assert_eq!(get("bob", "bob-pw").status, 200);
    assert_eq!(get("alice", "alice-pw").status, 200);
    // Someone new behind the same address waits the short Retry-After, then gets in.
    let r = get("dave", "dave-pw");
    assert_eq!(r.status, 429);
    let after: u64 = r.header("retry-after").unwrap().parse().unwrap();
    std::thread::sleep(Duration::from_millis(after * 1000 + 100));
    assert_eq!(
        get("dave", "dave-pw").status,
        200,
        "slowed, never locked out"
    );
}

#[test]
fn clients_log_in_through_the_edge() {
    let core = secured_core("", "trusted_proxies: [127.0.0.1, \"::1\"]\n");
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca");
    make_ca(&ca);
    let name = "auth.berth.test";
    let (cert, key) = issue(
        &ca,
        &work.path().join("leaf"),
        "server",
        &[name, "localhost"],
        &["::1", "127.0.0.1"],
    );
    let upstream = core.connector("hosted").to_owned();
    // One listener on ::1 for docker (which skips TLS checks on 127.0.0.0/8), one on
    // 127.0.0.1 for skopeo and podman under `localhost`.
    let edge = Edge::start(2, |p| {
        format!(
            "state_dir: ./state\nlisteners:\n  - listen: \"[::1]:{}\"\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n  - listen: 127.0.0.1:{}\n    tls: {{ cert: {}, key: {} }}\n    upstreams: [{upstream}]\n",
            p[0], cert.display(), key.display(), p[1], cert.display(), key.display()
        )
    });
    let port = edge.ports[0];

    // The realm is the external URL: https, the edge's port, once.
    let out = run(Command::new("curl")
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
        .arg(ca.join("ca.crt"))
        .arg("--resolve")
        .arg(format!("{name}:{port}:[::1]"))
        .arg(format!("https://{name}:{port}/v2/")));
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        text.contains(&format!(
            "www-authenticate: bearer realm=\"https://{name}:{port}/v2/token\""
        )),
        "{text}"
    );

    // skopeo with --creds, podman login.
    let trust = work.path().join("trust");
    std::fs::create_dir_all(&trust).unwrap();
    std::fs::copy(ca.join("ca.crt"), trust.join("ca.crt")).unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64")],
        &[100_000],
        71,
    );
    let reg = format!("localhost:{}", edge.ports[1]);
    let refused = skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(&trust)
        .args(["--dest-creds", "bob:bob-pw"])
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{reg}/team/app:v1"))
        .output()
        .unwrap();
    assert!(!refused.status.success(), "bob pushed without write");
    run(skopeo()
        .args(["copy", "--dest-cert-dir"])
        .arg(&trust)
        .args(["--dest-creds", "alice:alice-pw"])
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{reg}/team/app:v1")));
    let anon = skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&trust)
        .arg(format!("docker://{reg}/team/app:v1"))
        .output()
        .unwrap();
    assert!(
        !anon.status.success(),
        "anonymous pull from a private repository"
    );
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&trust)
        .args(["--creds", "bob:bob-pw"])
        .arg(format!("docker://{reg}/team/app:v1")));
    assert_eq!(http::digest(&raw.stdout), img.top);
    let root = work.path().join("podman");
    let mut login = podman(&root);
    login
        .args(["login", "--cert-dir"])
        .arg(&trust)
        .args(["-u", "bob", "--password-stdin", &reg])
        .stdin(Stdio::piped());
    let mut child = login.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"bob-pw\n").unwrap();
    assert!(child.wait().unwrap().success(), "podman login failed");
    run(podman(&root)
        .args(["pull", "--cert-dir"])
        .arg(&trust)
        .arg(format!("{reg}/team/app:v1")));

    // docker login / push / pull, verifying the edge's certificate through certs.d.
    let _restore = Restore {
        hosts: std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        dirs: vec![
            format!("/etc/docker/certs.d/{name}:{port}").into(),
            format!("/etc/containers/certs.d/{name}:{port}").into(),
        ],
    };
    std::fs::write("/etc/hosts", format!("{}::1 {name}\n", _restore.hosts)).unwrap();
    run(Command::new(berth_tests::bin("berth-certs"))
        .args(["docker-trust", &format!("{name}:{port}"), "--ca"])
        .arg(&ca));
    let dockerd = Dockerd::start();
    let remote = format!("{name}:{port}/team/app:v1");
    let login = |user: &str, pass: &str| {
        let mut c = dockerd.docker();
        c.args([
            "login",
            "-u",
            user,
            "--password-stdin",
            &format!("{name}:{port}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pass}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(
        !login("alice", "wrong").status.success(),
        "docker login with a wrong password"
    );
    assert!(login("bob", "bob-pw").status.success());
    run(dockerd.docker().args(["pull", &remote]));
    let pushed = format!("{name}:{port}/team/bob:v1");
    run(dockerd.docker().args(["tag", &remote, &pushed]));
    assert!(
        !dockerd
            .docker()
            .args(["push", &pushed])
            .output()
            .unwrap()
            .status
            .success(),
        "bob pushed"
    );
    assert!(login("alice", "alice-pw").status.success());
    run(dockerd.docker().args(["push", &pushed]));
}

/// Puts /etc/hosts back and removes installed trust, even when the test fails.
struct Restore {
    hosts: String,
    dirs: Vec<std::path::PathBuf>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write("/etc/hosts", &self.hosts);
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
