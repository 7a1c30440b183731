//! Manifests byte for byte, their rules, indexes and negotiation, referrers, tags and the catalog.

use http::StatusCode;
use serde_json::json;

use berth_core::oci::Digest;
use berth_core::server::Port;

use crate::harness::*;

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
