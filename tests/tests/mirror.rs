//! Mirror mode for Kubernetes nodes: containerd and CRI-O pull every upstream through one
//! Berth port and name the upstream in `?ns=`; a group with `mirrors` hands each request to
//! the repository mapped to that upstream. Driven with the requests containerd sends (HEAD of
//! the tag with its Accept list, GET by digest, blobs, each with `ns`).

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::core::Core;
use berth_tests::http::{self, request};
use berth_tests::registry::{oci_manifest, push_blob, put_manifest, OCI_MANIFEST};

/// containerd's Accept list for manifests.
const CONTAINERD_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, */*";

/// Pushes `library/alpine:3` whose one layer says which upstream it came from.
fn push_alpine(addr: &str, upstream: &str) -> (String, Vec<u8>) {
    let config = format!("{{\"upstream\":\"{upstream}\"}}").into_bytes();
    let layer = format!("alpine from {upstream}").into_bytes();
    for b in [&config, &layer] {
        assert_eq!(push_blob(addr, "library/alpine", b).unwrap().status, 201);
    }
    let m = oci_manifest(&config, &[&layer]);
    assert_eq!(
        put_manifest(addr, "library/alpine", "3", &m)
            .unwrap()
            .status,
        201
    );
    (http::digest(&m), layer)
}

/// What containerd does for `<ns>/library/alpine:3` against a mirror; the layer's bytes.
fn containerd_pull(mirror: &str, ns: &str) -> Result<Vec<u8>, u16> {
    let q = format!("?ns={ns}");
    let head = request(
        mirror,
        "HEAD",
        &format!("/v2/library/alpine/manifests/3{q}"),
        &[("Accept", CONTAINERD_ACCEPT)],
        b"",
    )
    .unwrap();
    if head.status != 200 {
        return Err(head.status);
    }
    let digest = head.header("docker-content-digest").unwrap().to_owned();
    let m = request(
        mirror,
        "GET",
        &format!("/v2/library/alpine/manifests/{digest}{q}"),
        &[("Accept", CONTAINERD_ACCEPT)],
        b"",
    )
    .unwrap();
    assert_eq!(m.status, 200);
    assert_eq!(http::digest(&m.body), digest, "the manifest it named");
    let layer = m.json()["layers"][0]["digest"].as_str().unwrap().to_owned();
    let b = request(
        mirror,
        "GET",
        &format!("/v2/library/alpine/blobs/{layer}{q}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(b.status, 200);
    Ok(b.body)
}

#[test]
fn one_port_mirrors_every_upstream_by_the_ns_parameter() {
    // Two upstreams: repositories of another core standing in for docker.io and ghcr.io.
    let dir = tempfile::tempdir().unwrap();
    let up = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hub, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: gh, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display()
    );
    let upstream = Core::start_in(dir, &up);
    let (hub_digest, hub_layer) = push_alpine(upstream.connector("hub"), "docker.io");
    let (gh_digest, gh_layer) = push_alpine(upstream.connector("gh"), "ghcr.io");
    assert_ne!(hub_digest, gh_digest);

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - name: nodes\n    kind: group\n    members: [docker-hub]\n\
         \x20   mirrors: {{ docker.io: docker-hub, ghcr.io: ghcr }}\n\
         \x20   connector: {{ http: 127.0.0.1:0 }}\n\
         \x20 - {{ name: docker-hub, kind: proxy, remote: {{ url: \"http://{}\" }} }}\n\
         \x20 - {{ name: ghcr, kind: proxy, remote: {{ url: \"http://{}\" }} }}\n",
        dir.path().join("data").display(),
        upstream.connector("hub"),
        upstream.connector("gh"),
    );
    let core = Core::start_in(dir, &config);
    let mirror = core.connector("nodes");

    assert_eq!(containerd_pull(mirror, "docker.io"), Ok(hub_layer.clone()));
    assert_eq!(containerd_pull(mirror, "ghcr.io"), Ok(gh_layer));
    // Case as nodes may send it; then an upstream not mirrored is a 404 (the node falls back
    // to the upstream itself) rather than another registry's image of the same name.
    assert_eq!(containerd_pull(mirror, "Docker.IO"), Ok(hub_layer.clone()));
    assert_eq!(containerd_pull(mirror, "quay.io"), Err(404));
    let r = request(
        mirror,
        "GET",
        "/v2/library/alpine/manifests/3?ns=quay.io",
        &[("Accept", OCI_MANIFEST)],
        b"",
    )
    .unwrap();
    assert_eq!(r.code(), "NAME_UNKNOWN");
    assert!(String::from_utf8_lossy(&r.body).contains("docker.io, ghcr.io"));
    // Without `ns` the group serves as a group: its members, in order.
    let r = request(
        mirror,
        "GET",
        "/v2/library/alpine/manifests/3",
        &[("Accept", OCI_MANIFEST)],
        b"",
    )
    .unwrap();
    assert_eq!(http::digest(&r.body), hub_digest);
}

/// A containerd daemon of the test's own (its root, state and socket in a temp dir).
struct Containerd {
    child: Child,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
                 [grpc]\n  address = \"{1}\"\n",
                dir.path().display(),
                socket.display()
            ),
        )
        .unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("containerd (Debian's containerd, installed with docker.io)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "containerd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd {
            child,
            socket,
            _dir: dir,
        }
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(&self.socket);
        c
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real containerd with the `hosts.toml` of deploy/mirror: the group's members hold nothing, so
/// only the `ns=docker.io` route reaches the image; an upstream the group does not mirror
/// fails over to its own server (unreachable here) instead of being served another image.
#[test]
fn containerd_pulls_docker_io_through_the_mirror_port() {
    let dir = tempfile::tempdir().unwrap();
    let up = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: hub, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display()
    );
    let upstream = Core::start_in(dir, &up);
    let (_, layer) = push_alpine(upstream.connector("hub"), "docker.io");
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
         \x20 - {{ name: nodes, kind: group, members: [empty], mirrors: {{ docker.io: docker-hub }}, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: empty, kind: hosted }}\n\
         \x20 - {{ name: docker-hub, kind: proxy, remote: {{ url: \"http://{}\" }} }}\n",
        dir.path().join("data").display(),
        upstream.connector("hub"),
    );
    let core = Core::start_in(dir, &config);
    let hosts = tempfile::tempdir().unwrap();
    for upstream in ["docker.io", "quay.io"] {
        let d = hosts.path().join(upstream);
        std::fs::create_dir_all(&d).unwrap();
        let server = if upstream == "docker.io" {
            "https://registry-1.docker.io"
        } else {
            "https://quay.io"
        };
        std::fs::write(
            d.join("hosts.toml"),
            format!(
                "server = \"{server}\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
                core.connector("nodes")
            ),
        )
        .unwrap();
    }
    let ctd = Containerd::start();
    let fetch = |image: &str| {
        ctd.ctr()
            .args(["content", "fetch", "--hosts-dir"])
            .arg(hosts.path())
            .arg(image)
            .output()
            .unwrap()
    };
    let out = fetch("docker.io/library/alpine:3");
    assert!(
        out.status.success(),
        "ctr content fetch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = ctd
        .ctr()
        .args(["content", "get", &http::digest(&layer)])
        .output()
        .unwrap();
    assert_eq!(got.stdout, layer, "the layer containerd stored");
    let out = fetch("quay.io/library/alpine:3");
    assert!(
        !out.status.success(),
        "quay.io is not mirrored: no image from docker.io"
    );
}
