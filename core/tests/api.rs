//! In-process API tests: the real router and handlers, wired from YAML exactly as the binary
//! wires them, over in-memory storage, no sockets.

// Helpers in a test crate panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use berth_core::api::{response, Conn, Port, Registry};
use berth_core::config::{Config, Source};
use berth_core::oci::Digest;
use berth_core::storage::Stores;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Reply {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

struct Harness {
    registry: Registry,
    connector: Port,
    /// Holds the storage root (token keys) for the harness's lifetime.
    _dir: tempfile::TempDir,
}

/// Builds the registry exactly as the binary does: YAML through `Config::parse`, then
/// `server::registry` (access control included), over in-memory storage.
async fn harness_from(yaml: &str) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n{yaml}",
        dir.path().display()
    );
    let config = Config::parse(&text, &Source::new("api-test.yaml", dir.path())).unwrap();
    let stores = Stores::memory().await.unwrap();
    let (config, control) = berth_core::server::Control::start(config, stores.clone())
        .await
        .unwrap();
    let registry = berth_core::server::registry(&config, &stores, control).unwrap();
    let connector = Port::Connector(registry.repos().keys().next().unwrap().clone());
    Harness {
        registry,
        connector,
        _dir: dir,
    }
}

async fn harness_with(policy: &str, v1: bool) -> Harness {
    harness_from(&format!(
        "repositories:\n  - {{ name: hosted, kind: hosted, write_policy: {policy}, v1_enabled: {v1} }}\n  - {{ name: other, kind: hosted, v1_enabled: {v1} }}\n"
    ))
    .await
}

async fn harness() -> Harness {
    harness_with("allow_redeploy", false).await
}

impl Harness {
    async fn call_on(
        &self,
        l: &Port,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "registry.test:5000");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(response::full(body.into())).unwrap();
        let conn = Conn {
            peer: "127.0.0.1:50000".parse().unwrap(),
            local: "127.0.0.1:5000".parse().unwrap(),
            tls: false,
            request: 0,
        };
        let resp = self.registry.handle(l, conn, req).await;
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.call_on(&self.connector, method, uri, headers, body)
            .await
    }

    async fn push_blob(&self, name: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .call(
                "POST",
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
                &[],
                data.to_vec(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        d
    }

    async fn push_image(&self, name: &str, tag: &str, seed: &str) -> (Digest, Vec<u8>) {
        let config_bytes = format!("{{\"seed\":\"{seed}\"}}");
        let layer_bytes = format!("layer {seed}");
        let config = self.push_blob(name, config_bytes.as_bytes()).await;
        let layer = self.push_blob(name, layer_bytes.as_bytes()).await;
        let m = json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": config_bytes.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer.to_string(), "size": layer_bytes.len()}]
        });
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        let r = self
            .call(
                "PUT",
                &format!("/v2/{name}/manifests/{tag}"),
                &[("content-type", OCI_MANIFEST)],
                bytes.clone(),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        (Digest::sha256_of(&bytes), bytes)
    }
}

#[tokio::test]
async fn base_endpoint_announces_the_api() {
    let h = harness().await;
    let r = h.call("GET", "/v2/", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("docker-distribution-api-version"), "registry/2.0");
}

#[tokio::test]
async fn monolithic_post_put_and_single_post() {
    let h = harness().await;
    let r = h.call("POST", "/v2/app/blobs/uploads/", &[], "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let loc = r.header("location").to_owned();
    assert!(
        loc.starts_with("http://registry.test:5000/v2/app/blobs/uploads/"),
        "{loc}"
    );
    assert_eq!(r.header("range"), "0-0");
    let d = Digest::sha256_of(b"monolithic");
    let r = h
        .call(
            "PUT",
            &format!(
                "{}?digest={d}",
                loc.trim_start_matches("http://registry.test:5000")
            ),
            &[],
            "monolithic",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.header("docker-content-digest"), d.to_string());
    assert_eq!(
        r.header("location"),
        format!("http://registry.test:5000/v2/app/blobs/{d}")
    );
    let r = h.call("GET", &format!("/v2/app/blobs/{d}"), &[], "").await;
    assert_eq!(r.body, Bytes::from_static(b"monolithic"));
    h.push_blob("app", b"single post").await;
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk() {
    let h = harness().await;
    let r = h.call("POST", "/v2/app/blobs/uploads/", &[], "").await;
    let path = r
        .header("location")
        .trim_start_matches("http://registry.test:5000")
        .to_owned();
    let r = h
        .call(
            "PATCH",
            &path,
            &[("content-range", "5-9"), ("content-length", "5")],
            "56789",
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    let r = h
        .call(
            "PATCH",
            &path,
            &[("content-range", "0-4"), ("content-length", "5")],
            "01234",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-4");
    let r = h.call("GET", &path, &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.header("range"), "0-4");
    let d = Digest::sha256_of(b"0123456789");
    let r = h
        .call(
            "PUT",
            &format!("{path}?digest={d}"),
            &[("content-range", "5-9"), ("content-length", "5")],
            "56789",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // The session is closed: its URL is now unknown.
    let r = h.call("PATCH", &path, &[], "more").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    let r = h.call("GET", &format!("/v2/app/blobs/{d}"), &[], "").await;
    assert_eq!(r.body, Bytes::from_static(b"0123456789"));
}

#[tokio::test]
async fn docker_style_streamed_patch_and_cancel() {
    let h = harness().await;
    let r = h.call("POST", "/v2/app/blobs/uploads/", &[], "").await;
    let path = r
        .header("location")
        .trim_start_matches("http://registry.test:5000")
        .to_owned();
    let r = h.call("PATCH", &path, &[], vec![7u8; 100_000]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), "0-99999");
    let r = h.call("DELETE", &path, &[], "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.call("GET", &path, &[], "").await;
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn digest_mismatch_is_rejected_and_nothing_is_stored() {
    let h = harness().await;
    let wrong = Digest::sha256_of(b"something else");
    let r = h
        .call(
            "POST",
            &format!("/v2/app/blobs/uploads/?digest={wrong}"),
            &[],
            "payload",
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "DIGEST_INVALID");
    for d in [wrong, Digest::sha256_of(b"payload")] {
        let r = h.call("HEAD", &format!("/v2/app/blobs/{d}"), &[], "").await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn malformed_input_is_a_4xx() {
    let h = harness().await;
    for (method, uri, code, status) in [
        // Reads of what cannot be spelled are 404 (conformance: `.INVALID_MANIFEST_NAME`).
        ("GET", "/v2/app/blobs/sha256:nothex", "BLOB_UNKNOWN", 404),
        ("HEAD", "/v2/app/blobs/md5:abc", "", 404),
        (
            "GET",
            "/v2/app/manifests/sha256:zz",
            "MANIFEST_UNKNOWN",
            404,
        ),
        ("GET", "/v2/app/manifests/-bad-tag", "MANIFEST_UNKNOWN", 404),
        (
            "GET",
            "/v2/app/manifests/.INVALID_MANIFEST_NAME",
            "MANIFEST_UNKNOWN",
            404,
        ),
        ("HEAD", "/v2/app/manifests/.INVALID_MANIFEST_NAME", "", 404),
        // Writes to them stay 400.
        (
            "PUT",
            "/v2/app/manifests/.INVALID_MANIFEST_NAME",
            "MANIFEST_INVALID",
            400,
        ),
        ("PUT", "/v2/app/manifests/sha256:zz", "DIGEST_INVALID", 400),
        (
            "DELETE",
            "/v2/app/blobs/sha256:nothex",
            "DIGEST_INVALID",
            400,
        ),
        ("GET", "/v2/App/tags/list", "NAME_INVALID", 400),
        ("GET", "/v2/a/../b/tags/list", "NAME_INVALID", 400),
        ("GET", "/v2/a%2fb/tags/list", "NAME_INVALID", 400),
        ("GET", "/v2/app/tags/list", "NAME_UNKNOWN", 404),
        ("GET", "/v2/app/manifests/latest", "MANIFEST_UNKNOWN", 404),
        (
            "PUT",
            "/v2/app/blobs/uploads/0123456789abcdef0123456789abcdef?digest=sha256:00",
            "DIGEST_INVALID",
            400,
        ),
        ("PUT", "/v2/app/blobs/uploads/nope", "DIGEST_INVALID", 400),
        (
            "PATCH",
            "/v2/app/blobs/uploads/nope",
            "BLOB_UPLOAD_UNKNOWN",
            404,
        ),
    ] {
        let r = h.call(method, uri, &[], "").await;
        assert_eq!(r.status.as_u16(), status, "{method} {uri}: {:?}", r.body);
        if method != "HEAD" {
            assert_eq!(r.code(), code, "{method} {uri}");
        }
    }
}

#[tokio::test]
async fn blob_ranges() {
    let h = harness().await;
    let d = h.push_blob("app", b"0123456789").await;
    let uri = format!("/v2/app/blobs/{d}");
    let r = h.call("GET", &uri, &[("range", "bytes=2-4")], "").await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, Bytes::from_static(b"234"));
    assert_eq!(r.header("content-range"), "bytes 2-4/10");
    let r = h.call("GET", &uri, &[("range", "bytes=-3")], "").await;
    assert_eq!(r.body, Bytes::from_static(b"789"));
    let r = h.call("GET", &uri, &[("range", "bytes=10-")], "").await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), "bytes */10");
    let r = h.call("HEAD", &uri, &[], "").await;
    assert_eq!(r.header("content-length"), "10");
    assert!(r.body.is_empty());
    let r = h.call("DELETE", &uri, &[], "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = h.call("GET", &uri, &[], "").await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");
}

#[tokio::test]
async fn manifests_round_trip_byte_exact() {
    let h = harness().await;
    let (d, bytes) = h.push_image("team/app", "v1", "a").await;
    for reference in ["v1".to_owned(), d.to_string()] {
        let r = h
            .call(
                "GET",
                &format!("/v2/team/app/manifests/{reference}"),
                &[("accept", OCI_MANIFEST)],
                "",
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body.as_ref(), bytes.as_slice());
        assert_eq!(r.header("docker-content-digest"), d.to_string());
        assert_eq!(r.header("content-type"), OCI_MANIFEST);
    }
    let r = h.call("HEAD", "/v2/team/app/manifests/v1", &[], "").await;
    assert_eq!(r.header("content-length"), bytes.len().to_string());
    // Delete by tag removes only the tag.
    let r = h.call("DELETE", "/v2/team/app/manifests/v1", &[], "").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.call("GET", "/v2/team/app/manifests/v1", &[], "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.call("GET", &format!("/v2/team/app/manifests/{d}"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let r = h
        .call("DELETE", &format!("/v2/team/app/manifests/{d}"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        h.call("GET", &format!("/v2/team/app/manifests/{d}"), &[], "")
            .await
            .code(),
        "MANIFEST_UNKNOWN"
    );
}

#[tokio::test]
async fn manifest_rules() {
    let h = harness().await;
    let missing = Digest::sha256_of(b"never pushed");
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": missing.to_string(), "size": 1}, "layers": []});
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/x",
            &[("content-type", OCI_MANIFEST)],
            m.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/x",
            &[("content-type", OCI_MANIFEST)],
            "{not json",
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let (_, bytes) = h.push_image("app", "v1", "b").await;
    let r = h
        .call(
            "PUT",
            &format!("/v2/app/manifests/{missing}"),
            &[("content-type", OCI_MANIFEST)],
            bytes,
        )
        .await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let big = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/big",
            &[("content-type", OCI_MANIFEST)],
            big,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn index_with_attestation_and_negotiation() {
    let h = harness().await;
    let (amd64, amd_bytes) = h.push_image("app", "amd64", "amd").await;
    let (att, att_bytes) = h.push_image("app", "att", "att").await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": amd64.to_string(), "size": amd_bytes.len(), "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": OCI_MANIFEST, "digest": att.to_string(), "size": att_bytes.len(), "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": amd64.to_string()}}
    ]});
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/multi",
            &[("content-type", OCI_INDEX)],
            index.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let r = h
        .call(
            "GET",
            "/v2/app/manifests/multi",
            &[("accept", &format!("{OCI_MANIFEST}, {OCI_INDEX}"))],
            "",
        )
        .await;
    assert_eq!(r.header("content-type"), OCI_INDEX);
    // A client that cannot read indexes gets the linux/amd64 image.
    let r = h
        .call(
            "GET",
            "/v2/app/manifests/multi",
            &[("accept", OCI_MANIFEST)],
            "",
        )
        .await;
    assert_eq!(r.header("docker-content-digest"), amd64.to_string());
    let missing = Digest::sha256_of(b"child");
    let bad = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{"mediaType": OCI_MANIFEST, "digest": missing.to_string(), "size": 1}]});
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/bad",
            &[("content-type", OCI_INDEX)],
            bad.to_string(),
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_BLOB_UNKNOWN");
}

#[tokio::test]
async fn referrers_and_subject() {
    let h = harness().await;
    let (subject, subject_bytes) = h.push_image("app", "v1", "s").await;
    let empty = h.push_blob("app", b"{}").await;
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
    ]
    .iter()
    .enumerate()
    {
        let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
            "layers": [], "annotations": {"n": i.to_string()},
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": subject_bytes.len()}});
        let bytes = m.to_string();
        let d = Digest::sha256_of(bytes.as_bytes());
        let r = h
            .call(
                "PUT",
                &format!("/v2/app/manifests/{d}"),
                &[("content-type", OCI_MANIFEST)],
                bytes,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
        assert_eq!(r.header("oci-subject"), subject.to_string());
    }
    let r = h
        .call("GET", &format!("/v2/app/referrers/{subject}"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-type"), OCI_INDEX);
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 2);
    let r = h
        .call(
            "GET",
            &format!("/v2/app/referrers/{subject}?artifactType=application/vnd.example.sig"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.header("oci-filters-applied"), "artifactType");
    let ms = r.json()["manifests"].clone();
    assert_eq!(ms.as_array().unwrap().len(), 1);
    assert_eq!(ms[0]["artifactType"], "application/vnd.example.sig");
    assert_eq!(ms[0]["annotations"]["n"], "1");
    let nobody = Digest::sha256_of(b"no referrers");
    let r = h
        .call("GET", &format!("/v2/app/referrers/{nobody}"), &[], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["manifests"], json!([]));
}

#[tokio::test]
async fn tag_and_catalog_paging() {
    let h = harness().await;
    for t in ["c", "a", "b", "d"] {
        h.push_image("app", t, "p").await;
    }
    h.push_image("zzz", "x", "p").await;
    let r = h.call("GET", "/v2/app/tags/list", &[], "").await;
    assert_eq!(
        r.json(),
        json!({"name": "app", "tags": ["a", "b", "c", "d"]})
    );
    let r = h.call("GET", "/v2/app/tags/list?n=2", &[], "").await;
    assert_eq!(r.json()["tags"], json!(["a", "b"]));
    assert_eq!(
        r.header("link"),
        "</v2/app/tags/list?n=2&last=b>; rel=\"next\""
    );
    let r = h.call("GET", "/v2/app/tags/list?n=2&last=b", &[], "").await;
    assert_eq!(r.json()["tags"], json!(["c", "d"]));
    assert_eq!(r.header("link"), "");
    let r = h.call("GET", "/v2/app/tags/list?n=0", &[], "").await;
    assert_eq!(r.json()["tags"], json!([]));
    let r = h.call("GET", "/v2/_catalog?n=1", &[], "").await;
    assert_eq!(r.json()["repositories"], json!(["app"]));
    assert_eq!(
        r.header("link"),
        "</v2/_catalog?n=1&last=app>; rel=\"next\""
    );
    // The main port prefixes each image with its repository.
    let r = h.call_on(&Port::Main, "GET", "/v2/_catalog", &[], "").await;
    assert_eq!(
        r.json()["repositories"],
        json!(["hosted/app", "hosted/zzz"])
    );
}

#[tokio::test]
async fn main_port_routes_by_first_component() {
    let h = harness().await;
    h.push_image("team/app", "v1", "m").await;
    let r = h
        .call_on(
            &Port::Main,
            "GET",
            "/v2/hosted/team/app/manifests/v1",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call_on(
            &Port::Main,
            "POST",
            "/v2/hosted/team/app/blobs/uploads/",
            &[],
            "",
        )
        .await;
    assert!(r
        .header("location")
        .contains("/v2/hosted/team/app/blobs/uploads/"));
    let r = h
        .call_on(&Port::Main, "GET", "/v2/nosuch/app/tags/list", &[], "")
        .await;
    assert_eq!(r.code(), "NAME_UNKNOWN");
    let r = h
        .call_on(
            &Port::Main,
            "GET",
            "/v2/other/team/app/manifests/v1",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "repositories are separate");
    let r = h
        .call_on(&Port::Main, "GET", "/berth/health", &[], "")
        .await;
    assert_eq!(r.json()["status"], "ok");
}

#[tokio::test]
async fn cross_repository_mount() {
    let h = harness().await;
    let d = h.push_blob("src", b"shared layer").await;
    let r = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        format!("http://registry.test:5000/v2/dst/blobs/{d}")
    );
    assert_eq!(
        h.call("HEAD", &format!("/v2/dst/blobs/{d}"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let unknown = Digest::sha256_of(b"not there");
    let r = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={unknown}&from=src"),
            &[],
            "",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "falls back to an upload session"
    );
}

#[tokio::test]
async fn write_policies() {
    let h = harness_with("deny_redeploy", false).await;
    h.push_image("app", "v1", "one").await;
    h.push_image("app", "v1", "one").await; // the same manifest again is fine
    let config = h.push_blob("app", b"{\"seed\":\"two\"}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 14}, "layers": []});
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            m.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");

    let ro = harness_with("read_only", false).await;
    let r = ro.call("POST", "/v2/app/blobs/uploads/", &[], "").await;
    assert_eq!(r.code(), "DENIED");
}

#[tokio::test]
async fn v1_toggle() {
    let off = harness().await;
    let r = off.call("GET", "/v1/_ping", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("v1_enabled"));
    assert_eq!(r.header("x-docker-registry-version"), "");
    let on = harness_with("allow_redeploy", true).await;
    on.push_image("team/web", "v1", "x").await;
    on.push_image("team/db", "v1", "y").await;
    let r = on.call("GET", "/v1/_ping", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-docker-registry-version"), "0.6.0");
    let r = on.call("GET", "/v1/search?q=web&n=25", &[], "").await;
    assert_eq!(r.json()["num_results"], 1);
    assert_eq!(r.json()["results"][0]["name"], "team/web");
}

#[tokio::test]
async fn access_control_is_wired_as_in_the_binary() {
    let hash = berth_core::auth::password::hash("pw").unwrap();
    let h = harness_from(&format!(
        "auth:\n  users: [{{ name: alice, password_hash: \"{hash}\", roles: [dev] }}]\n  roles: [{{ name: dev, privileges: [{{ repositories: \"*\", actions: [read, write] }}] }}]\nrepositories:\n  - {{ name: hosted, kind: hosted }}\n"
    ))
    .await;
    let r = h.call("GET", "/v2/", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .starts_with("Bearer realm=\"http://registry.test:5000/v2/token\""),
        "{}",
        r.header("www-authenticate")
    );
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw")
    );
    let r = h
        .call("GET", "/v2/", &[("authorization", &basic)], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call(
            "DELETE",
            "/v2/app/manifests/latest",
            &[("authorization", &basic)],
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
}
