//! Several stateless cores on one PostgreSQL and one S3 bucket (s3s-fs): an upload begun on
//! one core is continued and finished on another, an image pushed through one is pulled
//! through the other, nothing of it lives on either core's disk, and behind one edge that
//! spreads requests over both, skopeo pushes and pulls as if there were one core.

#![allow(clippy::unwrap_used)]

use berth_tests::core::{stores_config, Core};
use berth_tests::edge::front_edge;
use berth_tests::http::{digest, request};
use berth_tests::image::write_layout;
use berth_tests::postgres::Postgres;
use berth_tests::prometheus::{sample, scrape};
use berth_tests::s3::S3Server;
use berth_tests::tools::{run, skopeo};

fn core(pg: &Postgres, s3: &S3Server) -> Core {
    core_with(pg, s3, "")
}

/// A core on the shared stores, with `extra` top-level YAML.
fn core_with(pg: &Postgres, s3: &S3Server, extra: &str) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage:\n  root: {}\n  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n\
         main: {{ listen: 127.0.0.1:0 }}\n{extra}\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display(),
        pg.url,
        s3.config("registry")
    );
    Core::start_in(dir, &config)
}

#[test]
fn an_upload_moves_between_cores_sharing_postgres_and_a_bucket() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let a = core(&pg, &s3);
    let b = core(&pg, &s3);
    let (ra, rb) = (
        a.connector("hosted").to_owned(),
        b.connector("hosted").to_owned(),
    );

    // POST and the first chunk on core A; the second chunk and the PUT on core B.
    let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let (one, two) = blob.split_at(1_000_000);
    let started = request(&ra, "POST", "/v2/app/blobs/uploads/", &[], b"").unwrap();
    assert_eq!(started.status, 202);
    let location = started.header("location").unwrap().to_owned();
    let path = location
        .split_once("://")
        .map_or(location.as_str(), |(_, rest)| {
            &rest[rest.find('/').unwrap()..]
        })
        .to_owned();
    let range = format!("0-{}", one.len() - 1);
    let first = request(&ra, "PATCH", &path, &[("content-range", &range)], one).unwrap();
    assert_eq!(
        first.status,
        202,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let status = request(&rb, "GET", &path, &[], b"").unwrap();
    assert_eq!(status.status, 204);
    assert_eq!(
        status.header("range"),
        Some(range.as_str()),
        "B sees A's bytes"
    );
    let range2 = format!("{}-{}", one.len(), blob.len() - 1);
    let second = request(&rb, "PATCH", &path, &[("content-range", &range2)], two).unwrap();
    assert_eq!(
        second.status,
        202,
        "{}",
        String::from_utf8_lossy(&second.body)
    );
    let d = digest(&blob);
    let sep = if path.contains('?') { '&' } else { '?' };
    let done = request(&rb, "PUT", &format!("{path}{sep}digest={d}"), &[], b"").unwrap();
    assert_eq!(done.status, 201, "{}", String::from_utf8_lossy(&done.body));
    let got = request(&ra, "GET", &format!("/v2/app/blobs/{d}"), &[], b"").unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(digest(&got.body), d, "A serves what B committed");

    // A real client: push through A, read back through B.
    let work = tempfile::tempdir().unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64")],
        &[200_000, 6_000_000],
        7,
    );
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{ra}/app:v1")));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{rb}/app:v1")));
    assert_eq!(digest(&raw.stdout), img.top);
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{rb}/app:v1"))
        .arg(format!("oci:{}:pulled", work.path().join("out").display())));

    // The bytes are in the bucket, not under either core's root.
    assert!(s3.bucket_dir().join("registry/blobs/sha256").exists());
    for c in [&a, &b] {
        let blobs = c.dir.path().join("data/blobs/sha256");
        let files = std::fs::read_dir(&blobs).map_or(0, |d| d.count());
        assert_eq!(files, 0, "{} holds blob files", blobs.display());
    }
}

/// A bucket that does not exist stops the start with the server's answer and the bucket's
/// name, instead of a core that fails every push.
#[test]
fn a_wrong_bucket_stops_the_start() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let blobs = s3.config("x").replace("bucket: berth", "bucket: missing");
    let config = format!(
        "storage:\n  root: {}\n  blobs: {blobs}\nmain: {{ listen: 127.0.0.1:0 }}\n",
        dir.path().join("data").display()
    );
    std::fs::write(dir.path().join("core.yaml"), config).unwrap();
    let out = std::process::Command::new(berth_tests::bin("berth-core"))
        .args(["serve", "--config"])
        .arg(dir.path().join("core.yaml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s3 bucket missing at http://127.0.0.1:"),
        "{err}"
    );
}

/// One edge, two cores on the same stores: the edge's round robin sends the requests of one
/// push to both, and the image comes back whole.
#[test]
fn behind_one_edge_a_push_spread_over_two_cores_pulls_back_whole() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let (a, b) = (core(&pg, &s3), core(&pg, &s3));
    let pki = tempfile::tempdir().unwrap();
    let (edge, trust) = front_edge(&[a.connector("hosted"), b.connector("hosted")], pki.path());
    let registry = format!("localhost:{}", edge.ports[0]);
    let work = tempfile::tempdir().unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64"), ("linux", "arm64")],
        &[300_000, 9_000_000],
        11,
    );
    run(skopeo()
        .args(["copy", "--all", "--dest-cert-dir"])
        .arg(&trust)
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{registry}/app:v1")));
    run(skopeo()
        .args(["copy", "--all", "--src-cert-dir"])
        .arg(&trust)
        .arg(format!("docker://{registry}/app:v1"))
        .arg(format!("oci:{}:back", work.path().join("back").display())));
    let raw = run(skopeo()
        .args(["inspect", "--raw", "--cert-dir"])
        .arg(&trust)
        .arg(format!("docker://{registry}/app:v1")));
    assert_eq!(digest(&raw.stdout), img.top);
    // Both cores served part of it.
    let text = scrape(&format!("127.0.0.1:{}", edge.ports[1]));
    for c in [&a, &b] {
        let served = text
            .lines()
            .filter(|l| l.starts_with("berth_edge_http_requests_total{"))
            .filter(|l| l.contains(&format!("upstream=\"{}\"", c.connector("hosted"))))
            .map(|l| sample(l, "berth_edge_http_requests_total"))
            .sum::<f64>();
        assert!(
            served >= 5.0,
            "{} served {served}:\n{text}",
            c.connector("hosted")
        );
    }
}

/// Garbage collection on the shared stores: a deleted image's blobs leave the bucket, what
/// another image still uses stays.
#[test]
fn garbage_collection_empties_the_bucket_of_what_nothing_uses() {
    use berth_tests::registry::{oci_manifest, push_blob, put_manifest};
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let a = core_with(
        &pg,
        &s3,
        "gc: { interval: 0s, grace: 1s, undo_window: 0s }\n",
    );
    let repo = a.connector("hosted").to_owned();
    let (config, shared, only) = (b"{}".to_vec(), vec![3u8; 50_000], vec![4u8; 70_000]);
    for blob in [&config, &shared, &only] {
        assert_eq!(push_blob(&repo, "app", blob).unwrap().status, 201);
    }
    let keep = oci_manifest(&config, &[&shared]);
    let gone = oci_manifest(&config, &[&shared, &only]);
    assert_eq!(
        put_manifest(&repo, "app", "keep", &keep).unwrap().status,
        201
    );
    assert_eq!(
        put_manifest(&repo, "app", "gone", &gone).unwrap().status,
        201
    );
    let path = format!("/v2/app/manifests/{}", digest(&gone));
    assert_eq!(
        request(&repo, "DELETE", &path, &[], b"").unwrap().status,
        202
    );
    // Touch times are whole seconds: past a 1 s grace for certain only 2 s later.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let gc = request(
        &a.main,
        "POST",
        "/api/v1/gc",
        &[("Content-Type", "application/json")],
        b"",
    )
    .unwrap();
    assert_eq!(gc.status, 200, "{}", String::from_utf8_lossy(&gc.body));
    let object = |d: &str| {
        let hex = d.trim_start_matches("sha256:");
        s3.bucket_dir()
            .join(format!("registry/blobs/sha256/{}/{hex}", &hex[..2]))
    };
    assert!(
        !object(&digest(&only)).exists(),
        "{}",
        String::from_utf8_lossy(&gc.body)
    );
    assert!(!object(&digest(&gone)).exists());
    assert!(object(&digest(&shared)).exists());
    assert!(object(&digest(&keep)).exists());
    let r = request(
        &repo,
        "GET",
        "/v2/app/manifests/keep",
        &[("accept", "application/vnd.oci.image.manifest.v1+json")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
}

/// `storage.blobs.s3.redirect: true`: a blob GET answers 307 to a presigned URL of the
/// bucket, whose bytes are the blob's; a HEAD and a manifest stay with the core, and skopeo
/// pulls the image whole by following the redirects.
#[test]
fn with_redirect_blob_reads_go_to_the_bucket() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = stores_config(
        &dir.path().join("data"),
        "",
        &s3.config_with("registry", ", redirect: true"),
    );
    let core = Core::start_in(dir, &config);
    let addr = core.connector("hosted");
    let work = tempfile::tempdir().unwrap();
    let img = write_layout(
        &work.path().join("img"),
        "v1",
        &[("linux", "amd64")],
        &[700_000],
        5,
    );
    run(skopeo()
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", work.path().join("img").display()))
        .arg(format!("docker://{addr}/app:v1")));
    let layer = &img.layers[0];
    let r = request(addr, "GET", &format!("/v2/app/blobs/{layer}"), &[], b"").unwrap();
    assert_eq!(r.status, 307, "{}", String::from_utf8_lossy(&r.body));
    let location = r.header("location").unwrap().to_owned();
    let rest = location
        .strip_prefix(&format!("{}/", s3.endpoint))
        .unwrap_or_else(|| panic!("{location} is not on {}", s3.endpoint));
    let host = s3.endpoint.trim_start_matches("http://");
    let fetched = request(host, "GET", &format!("/{rest}"), &[], b"").unwrap();
    assert_eq!(
        fetched.status,
        200,
        "{}",
        String::from_utf8_lossy(&fetched.body)
    );
    assert_eq!(&digest(&fetched.body), layer);
    // HEAD answers here, with the size; a blob not in the repository is still 404 here.
    let head = request(addr, "HEAD", &format!("/v2/app/blobs/{layer}"), &[], b"").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.header("content-length").is_some());
    let other = request(addr, "GET", &format!("/v2/other/blobs/{layer}"), &[], b"").unwrap();
    assert_eq!(other.status, 404);
    run(skopeo()
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{addr}/app:v1"))
        .arg(format!("oci:{}:back", work.path().join("back").display())));
    let back = std::fs::read(work.path().join("back/blobs/sha256").join(&layer[7..])).unwrap();
    assert_eq!(&digest(&back), layer);
}
