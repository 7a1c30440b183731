//! Replication against CNCF Distribution (Debian's `docker-registry`), access control on at
//! both ends: a push rule copying a multi-arch image with a referrer (the remote has no
//! referrers API: the fallback tag is kept) under a rename, filtered by image and tag, pulled
//! back byte-identical with skopeo, a second run skipping what is there; a pull rule bringing
//! a regex-filtered tag set into a hosted repository; a remote that is down (the run fails,
//! nothing half-written) then up (the next run copies); no password in the log.

use std::time::Duration;

use berth_tests::bench::Distribution;
use berth_tests::core::Core;
use berth_tests::http::{basic, digest, request};
use berth_tests::image::write_layout;
use berth_tests::postgres::Postgres;
use berth_tests::s3::S3Server;
use berth_tests::tools::{run, skopeo};

const ROOT: &str = "root-pw";
const REMOTE_PW: &str = "dist-s3cret-pw";

/// Distribution behind htpasswd (user `robot`).
fn distribution(work: &std::path::Path) -> Distribution {
    let out = run(std::process::Command::new("htpasswd").args(["-Bbn", "robot", REMOTE_PW]));
    let htpasswd = work.join("htpasswd");
    std::fs::write(&htpasswd, &out.stdout).unwrap();
    Distribution::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
        htpasswd.display()
    ))
}

/// A core with access control, one hosted repository and `rules` (YAML list items); user
/// `robot` (password [`REMOTE_PW`]) may push to it.
fn core_with(rules: &str) -> Core {
    core_on(rules, "")
}

/// [`core_with`] with `stores` (`metadata:` and `blobs:` lines of `storage`) shared.
fn core_on(rules: &str, stores: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("remote.pw");
    std::fs::write(&pw, format!("{REMOTE_PW}\n")).unwrap();
    let config = format!(
        "storage:\n  root: {data}\n{stores}main: {{ listen: 127.0.0.1:0 }}\n\
         auth:\n  users:\n    - {{ name: root, password_hash: \"{root}\", roles: [admins] }}\n\
         \x20   - {{ name: robot, password_hash: \"{robot}\", roles: [pushers] }}\n\
         \x20 roles:\n    - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: pushers, privileges: [{{ repositories: hosted, actions: [read, write] }}] }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         replication:{rules}",
        data = dir.path().join("data").display(),
        root = berth_tests::core::hash_password(ROOT),
        robot = berth_tests::core::hash_password(REMOTE_PW),
        rules = match rules {
            "" => " []\n".to_owned(),
            r => format!("\n{}", r.replace("PASSWORD_FILE", &pw.display().to_string())),
        },
    );
    Core::start_in(dir, &config)
}

fn admin(core: &Core, method: &str, path: &str) -> berth_tests::http::Response {
    let auth = basic("root", ROOT);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    request(&core.main, method, path, &headers, b"").unwrap()
}

/// Starts `rule` by hand and waits for its newest run to be recorded; that run's report.
fn run_rule(core: &Core, rule: &str) -> serde_json::Value {
    let before = admin(core, "GET", &format!("/api/v1/replication/{rule}/runs")).json();
    let seen = before.as_array().map_or(0, Vec::len);
    let started = admin(core, "POST", &format!("/api/v1/replication/{rule}/run"));
    assert_eq!(
        started.status,
        202,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let runs = admin(core, "GET", &format!("/api/v1/replication/{rule}/runs")).json();
        if runs.as_array().map_or(0, Vec::len) > seen {
            return runs[0].clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no run recorded: {}",
            core.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// An OCI artifact (a signature) whose subject is the index `index`.
fn signature_of(index: &[u8]) -> String {
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","artifactType":"application/vnd.example.sig","manifests":[],"subject":{{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"{}","size":{}}}}}"#,
        digest(index),
        index.len()
    )
}

/// skopeo with `args`, asserting it worked; its stdout.
fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A manifest's raw bytes from `addr` as `auth`.
fn raw_manifest(addr: &str, image: &str, reference: &str, auth: &str) -> (u16, Vec<u8>) {
    let accept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    let r = request(
        addr,
        "GET",
        &format!("/v2/{image}/manifests/{reference}"),
        &[("Accept", accept), ("Authorization", auth)],
        b"",
    )
    .unwrap();
    (r.status, r.body)
}

#[test]
fn a_push_rule_copies_images_with_referrers_and_skips_what_is_there() {
    let work = tempfile::tempdir().unwrap();
    let dist = distribution(work.path());
    let core = core_with(&format!(
        "  - name: to-dist\n    direction: push\n    repository: hosted\n\
         \x20   remote: {{ url: \"http://{}\", username: robot, password_file: PASSWORD_FILE }}\n\
         \x20   images: \"team/*\"\n    tags: \"v*\"\n    destination: \"mirror/{{image}}\"\n",
        dist.addr
    ));
    let hosted = core.connector("hosted").to_owned();
    let root = format!("root:{ROOT}");
    let layout = work.path().join("img");
    write_layout(
        &layout,
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[200_000, 30_000],
        7,
    );
    let oci = format!("oci:{}:v1", layout.display());
    for target in ["team/app:v1", "team/app:dev", "other/app:v1"] {
        let to = format!("docker://{hosted}/{target}");
        skopeo_ok(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            &root,
            &oci,
            &to,
        ]);
    }
    // A signature of the index, pushed to Berth.
    let berth_auth = basic("root", ROOT);
    let (_, index) = raw_manifest(&hosted, "team/app", "v1", &berth_auth);
    let signature = signature_of(&index);
    let sig_digest = digest(signature.as_bytes());
    let put = request(
        &hosted,
        "PUT",
        &format!("/v2/team/app/manifests/{sig_digest}"),
        &[
            ("Content-Type", "application/vnd.oci.image.index.v1+json"),
            ("Authorization", &berth_auth),
        ],
        signature.as_bytes(),
    )
    .unwrap();
    assert_eq!(put.status, 201);

    let rules = admin(&core, "GET", "/api/v1/replication").json();
    assert_eq!(rules[0]["name"], "to-dist", "{rules}");
    let report = run_rule(&core, "to-dist");
    assert_eq!(report["outcome"], "succeeded", "{report}\n{}", core.log());
    assert_eq!(report["images_copied"], 1, "only team/app:v1: {report}");
    assert_eq!(report["referrers_copied"], 1, "{report}");

    // At the remote, byte for byte, under the new name; the filtered-out ones are not there.
    let dist_auth = basic("robot", REMOTE_PW);
    let (status, copied) = raw_manifest(&dist.addr, "mirror/team/app", "v1", &dist_auth);
    assert_eq!((status, digest(&copied)), (200, digest(&index)));
    assert_eq!(
        raw_manifest(&dist.addr, "mirror/team/app", "dev", &dist_auth).0,
        404
    );
    assert_eq!(
        raw_manifest(&dist.addr, "mirror/other/app", "v1", &dist_auth).0,
        404
    );
    let back = work.path().join("back");
    let creds = format!("robot:{REMOTE_PW}");
    let from = format!("docker://{}/mirror/team/app:v1", dist.addr);
    let into = format!("oci:{}:v1", back.display());
    skopeo_ok(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &from,
        &into,
    ]);
    // Distribution 2.8 has no referrers API: the fallback tag lists the signature.
    let fallback = format!("sha256-{}", &digest(&index)[7..]);
    let (status, listed) = raw_manifest(&dist.addr, "mirror/team/app", &fallback, &dist_auth);
    assert_eq!(status, 200);
    assert!(
        String::from_utf8_lossy(&listed).contains(&sig_digest),
        "{}",
        String::from_utf8_lossy(&listed)
    );

    // Again: nothing to copy.
    let again = run_rule(&core, "to-dist");
    assert_eq!(
        (
            again["images_copied"].as_u64(),
            again["images_skipped"].as_u64()
        ),
        (Some(0), Some(1)),
        "{again}"
    );
    assert!(
        !core.log().contains(REMOTE_PW),
        "the remote's password in the log"
    );
}

#[test]
fn a_pull_rule_brings_a_filtered_tag_set_and_survives_a_remote_outage() {
    let work = tempfile::tempdir().unwrap();
    let mut dist = distribution(work.path());
    let creds = format!("robot:{REMOTE_PW}");
    for (tag, seed) in [("v1", 1), ("v2", 2), ("v2-rc", 3), ("latest", 4)] {
        let layout = work.path().join(tag);
        write_layout(&layout, tag, &[("linux", "amd64")], &[50_000], seed);
        let from = format!("oci:{}:{tag}", layout.display());
        let to = format!("docker://{}/lib/app:{tag}", dist.addr);
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &from,
            &to,
        ]);
    }
    let core = core_with(&format!(
        "  - name: from-dist\n    direction: pull\n\
         \x20   remote: {{ url: \"http://{}\", username: robot, password_file: PASSWORD_FILE }}\n\
         \x20   images: \"lib/*\"\n    tags_regex: \"^v[0-9]+$\"\n    destination: \"upstream/{{image}}\"\n",
        dist.addr
    ));
    let hosted = core.connector("hosted").to_owned();
    let berth = basic("root", ROOT);
    let dist_auth = basic("robot", REMOTE_PW);

    // The remote is down: the run fails, nothing is half there.
    dist.stop();
    let failed = run_rule(&core, "from-dist");
    assert_eq!(failed["outcome"], "failed", "{failed}");
    assert!(
        failed["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{failed}"
    );
    assert_eq!(
        raw_manifest(&hosted, "upstream/lib/app", "v1", &berth).0,
        404
    );

    dist.resume();
    let report = run_rule(&core, "from-dist");
    assert_eq!(report["outcome"], "succeeded", "{report}\n{}", core.log());
    assert_eq!(report["images_copied"], 2, "{report}");
    for tag in ["v1", "v2"] {
        let (_, there) = raw_manifest(&dist.addr, "lib/app", tag, &dist_auth);
        let (status, here) = raw_manifest(&hosted, "upstream/lib/app", tag, &berth);
        assert_eq!((status, digest(&here)), (200, digest(&there)), "{tag}");
    }
    for tag in ["v2-rc", "latest"] {
        assert_eq!(
            raw_manifest(&hosted, "upstream/lib/app", tag, &berth).0,
            404,
            "{tag}"
        );
    }
    let into = format!("oci:{}:v2", work.path().join("pulled").display());
    let from = format!("docker://{hosted}/upstream/lib/app:v2");
    let root = format!("root:{ROOT}");
    skopeo_ok(&[
        "copy",
        "--src-tls-verify=false",
        "--src-creds",
        &root,
        &from,
        &into,
    ]);
    let runs = admin(&core, "GET", "/api/v1/replication/from-dist/runs").json();
    assert_eq!(runs.as_array().map(Vec::len), Some(2), "{runs}");
    assert_eq!(runs[0]["outcome"], "succeeded", "newest first: {runs}");
    assert_eq!(
        admin(&core, "GET", "/api/v1/replication/nope/runs").status,
        404
    );
    ui_shows_and_runs(&core, "from-dist");
    assert!(
        !core.log().contains(REMOTE_PW),
        "the remote's password in the log"
    );
}

/// Mistakes in `replication` stop the start, naming the key.
#[test]
fn replication_config_errors_name_the_key() {
    let remote = "remote: { url: \"https://dr.example\" }";
    for (rule, key) in [
        (
            format!("{{ name: a, direction: pull, repository: nope, {remote} }}"),
            "replication[0].repository",
        ),
        (
            format!("{{ name: a, direction: push, {remote}, tags_regex: \"(\" }}"),
            "replication[0].tags_regex",
        ),
        (
            format!("{{ name: a, direction: pull, {remote}, trigger: {{ on_push: true }} }}"),
            "replication[0].trigger.on_push",
        ),
        (
            "{ name: a, direction: push, remote: { url: \"ftp://x\" } }".to_owned(),
            "replication[0].remote.url",
        ),
        (
            format!("{{ name: a, direction: push, {remote}, destination: \"{{nope}}\" }}"),
            "replication[0].destination",
        ),
        (
            "{ name: a, direction: push, remote: { url: \"https://x\", username: u } }".to_owned(),
            "replication[0].remote.password_file",
        ),
    ] {
        berth_tests::core::assert_refused(&format!("repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\nreplication:\n  - {rule}\n"), key);
    }
}

/// A push rule following pushes, to a second Berth with access control (the bearer-token
/// dance, and a remote with the referrers API): a tag pushed is there within seconds, its
/// referrer listed by the remote's referrers API.
#[test]
fn an_on_push_rule_copies_to_a_second_berth_within_seconds() {
    let b = core_with("");
    let b_hosted = b.connector("hosted").to_owned();
    let a = core_with(&format!(
        "  - name: to-b\n    direction: push\n    repository: hosted\n\
         \x20   remote: {{ url: \"http://{b_hosted}\", username: robot, password_file: PASSWORD_FILE }}\n\
         \x20   images: \"team/*\"\n    trigger: {{ on_push: true }}\n"
    ));
    let a_hosted = a.connector("hosted").to_owned();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("img");
    write_layout(
        &layout,
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[80_000],
        11,
    );
    let oci = format!("oci:{}:v1", layout.display());
    let root = format!("root:{ROOT}");
    let to = format!("docker://{a_hosted}/team/app:v1");
    skopeo_ok(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        "--dest-creds",
        &root,
        &oci,
        &to,
    ]);
    let a_auth = basic("root", ROOT);
    let (_, index) = raw_manifest(&a_hosted, "team/app", "v1", &a_auth);
    let b_auth = basic("robot", REMOTE_PW);
    let arrived = berth_tests::edge::wait_for(|| {
        let (status, there) = raw_manifest(&b_hosted, "team/app", "v1", &b_auth);
        (status == 200).then_some(there)
    })
    .unwrap_or_else(|| panic!("not replicated: {}", a.log()));
    assert_eq!(digest(&arrived), digest(&index));

    // A signature pushed next, by digest as signing tools do, follows it.
    let signature = signature_of(&index);
    let sig_digest = digest(signature.as_bytes());
    let put = request(
        &a_hosted,
        "PUT",
        &format!("/v2/team/app/manifests/{sig_digest}"),
        &[
            ("Content-Type", "application/vnd.oci.image.index.v1+json"),
            ("Authorization", &a_auth),
        ],
        signature.as_bytes(),
    )
    .unwrap();
    assert_eq!(put.status, 201);
    let listed = berth_tests::edge::wait_for(|| {
        let r = request(
            &b_hosted,
            "GET",
            &format!("/v2/team/app/referrers/{}", digest(&index)),
            &[("Authorization", &b_auth)],
            b"",
        )
        .unwrap();
        r.json()["manifests"][0]["digest"]
            .as_str()
            .map(str::to_owned)
    });
    assert_eq!(listed.as_deref(), Some(sig_digest.as_str()), "{}", a.log());
    let runs = admin(&a, "GET", "/api/v1/replication/to-b/runs").json();
    assert_eq!(runs[0]["trigger"], "push", "{runs}");
    assert!(!a.log().contains(REMOTE_PW));
}

/// Two cores on one PostgreSQL and one bucket hold the same rule: a run on one is in the
/// other's history, and the other's run finds everything already there.
#[test]
fn cores_share_a_rules_runs() {
    let work = tempfile::tempdir().unwrap();
    let dist = distribution(work.path());
    let (pg, s3) = (Postgres::start(), S3Server::start());
    let stores = format!(
        "  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n",
        pg.url,
        s3.config("registry")
    );
    let rule = format!(
        "  - name: to-dist\n    direction: push\n    repository: hosted\n\
         \x20   remote: {{ url: \"http://{}\", username: robot, password_file: PASSWORD_FILE }}\n",
        dist.addr
    );
    let (a, b) = (core_on(&rule, &stores), core_on(&rule, &stores));
    let layout = work.path().join("img");
    write_layout(&layout, "v1", &[("linux", "amd64")], &[60_000], 5);
    let oci = format!("oci:{}:v1", layout.display());
    let to = format!("docker://{}/team/app:v1", a.connector("hosted"));
    let root = format!("root:{ROOT}");
    skopeo_ok(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &root,
        &oci,
        &to,
    ]);
    let on_a = run_rule(&a, "to-dist");
    assert_eq!(
        (on_a["outcome"].as_str(), on_a["images_copied"].as_u64()),
        (Some("succeeded"), Some(1)),
        "{on_a}"
    );
    let seen_by_b = admin(&b, "GET", "/api/v1/replication/to-dist/runs").json();
    assert_eq!(seen_by_b[0]["id"], on_a["id"], "{seen_by_b}");
    let on_b = run_rule(&b, "to-dist");
    assert_ne!(on_b["core"], on_a["core"]);
    rules_made_at_run_time_reach_every_core(&a, &b, &dist.addr);
    assert_eq!(
        (
            on_b["images_copied"].as_u64(),
            on_b["images_skipped"].as_u64()
        ),
        (Some(0), Some(1)),
        "{on_b}"
    );
}

/// The admin page lists `rule` with its last run, and its button starts another.
fn ui_shows_and_runs(core: &Core, rule: &str) {
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let login = format!("user=root&password={ROOT}");
    let r = request(&core.main, "POST", "/ui/login", &form, login.as_bytes()).unwrap();
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = request(&core.main, "GET", "/ui/admin", &[("Cookie", &cookie)], b"").unwrap();
    let text = String::from_utf8_lossy(&page.body);
    let at = text
        .find(&format!("<td>{rule}</td>"))
        .unwrap_or_else(|| panic!("{rule} not on the admin page: {text}"));
    let row = &text[at..at + text[at..].find("</tr>").unwrap_or(0)];
    assert!(row.contains("succeeded"), "{row}");
    let headers = [form[0], ("Cookie", &cookie)];
    let body = format!("name={rule}");
    let started = request(
        &core.main,
        "POST",
        "/ui/admin/replication/run",
        &headers,
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(
        started.status,
        303,
        "{}",
        String::from_utf8_lossy(&started.body)
    );
}

/// With `delete: true`, a tag deleted here goes at the remote at the next run; the others stay.
#[test]
fn a_delete_rule_takes_tags_gone_here_away_there() {
    let work = tempfile::tempdir().unwrap();
    let dist = distribution(work.path());
    let core = core_with(&format!(
        "  - name: mirror\n    direction: push\n    repository: hosted\n\
         \x20   remote: {{ url: \"http://{}\", username: robot, password_file: PASSWORD_FILE }}\n\
         \x20   delete: true\n",
        dist.addr
    ));
    let hosted = core.connector("hosted").to_owned();
    let root = format!("root:{ROOT}");
    for (tag, seed) in [("v1", 21), ("v2", 22)] {
        let layout = work.path().join(tag);
        write_layout(&layout, tag, &[("linux", "amd64")], &[20_000], seed);
        let from = format!("oci:{}:{tag}", layout.display());
        let to = format!("docker://{hosted}/app:{tag}");
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &root,
            &from,
            &to,
        ]);
    }
    let first = run_rule(&core, "mirror");
    assert_eq!(first["images_copied"], 2, "{first}");
    let berth = basic("root", ROOT);
    let gone = request(
        &hosted,
        "DELETE",
        "/v2/app/manifests/v2",
        &[("Authorization", &berth)],
        b"",
    )
    .unwrap();
    assert_eq!(gone.status, 202, "{}", String::from_utf8_lossy(&gone.body));
    let second = run_rule(&core, "mirror");
    assert_eq!(second["tags_deleted"], 1, "{second}");
    let dist_auth = basic("robot", REMOTE_PW);
    assert_eq!(raw_manifest(&dist.addr, "app", "v2", &dist_auth).0, 404);
    assert_eq!(raw_manifest(&dist.addr, "app", "v1", &dist_auth).0, 200);
}

/// A rule created through a's admin API is run by b; deleted through b, a no longer has it.
fn rules_made_at_run_time_reach_every_core(a: &Core, b: &Core, remote: &str) {
    let pw = a.dir.path().join("remote.pw");
    let rule = serde_json::json!({
        "name": "copies", "direction": "push", "repository": "hosted",
        "remote": { "url": format!("http://{remote}"), "username": "robot", "password_file": pw },
        "destination": "copy/{image}",
    });
    let auth = basic("root", ROOT);
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let body = rule.to_string();
    let made = request(
        &a.main,
        "POST",
        "/api/v1/replication",
        &headers,
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let listed = |core: &Core| {
        let all = admin(core, "GET", "/api/v1/replication").json();
        all.as_array()
            .is_some_and(|r| r.iter().any(|x| x["name"] == "copies"))
    };
    assert!(
        berth_tests::edge::wait_for(|| listed(b).then_some(())).is_some(),
        "b never saw it"
    );
    let on_b = run_rule(b, "copies");
    assert_eq!(on_b["images_copied"], 1, "{on_b}");
    let dist_auth = basic("robot", REMOTE_PW);
    assert_eq!(
        raw_manifest(remote, "copy/team/app", "v1", &dist_auth).0,
        200
    );
    assert_eq!(admin(b, "DELETE", "/api/v1/replication/copies").status, 204);
    assert!(
        berth_tests::edge::wait_for(|| (!listed(a)).then_some(())).is_some(),
        "a kept it"
    );
}
