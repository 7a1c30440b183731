//! Blob uploads (monolithic, chunked, streamed, cancelled, mismatched), malformed input and ranges.

use bytes::Bytes;
use http::StatusCode;

use berth_core::oci::Digest;

use crate::harness::*;

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
