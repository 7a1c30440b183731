//! Registry API calls the black-box tests and benches share: monolithic blob pushes, OCI image
//! manifests built from their content, manifest puts and pulls. Over [`crate::http`], so each
//! is one plain request a test can inspect.

use crate::http::{self, request, Response};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `POST /v2/<image>/blobs/uploads/?digest=` with the whole blob, anonymously.
pub fn push_blob(addr: &str, image: &str, data: &[u8]) -> std::io::Result<Response> {
    send_blob(addr, image, "", &[], data)
}

/// The same push signed with `Authorization: auth`, with `query` (`ns=HOST&`, or empty) before
/// `digest=`; panics if the request cannot be sent.
pub fn push_blob_as(addr: &str, image: &str, query: &str, auth: &str, data: &[u8]) -> Response {
    send_blob(addr, image, query, &[("Authorization", auth)], data).expect("blob push sent")
}

fn send_blob(
    addr: &str,
    image: &str,
    query: &str,
    headers: &[(&str, &str)],
    data: &[u8],
) -> std::io::Result<Response> {
    let path = format!(
        "/v2/{image}/blobs/uploads/?{query}digest={}",
        http::digest(data)
    );
    request(addr, "POST", &path, headers, data)
}

/// An OCI image manifest naming `config` and `layers` with their true digests and sizes.
pub fn oci_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": http::digest(l),
                "size": l.len(),
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": http::digest(config),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("manifest JSON")
}

/// `PUT /v2/<image>/manifests/<reference>` of an OCI image manifest.
pub fn put_manifest(
    addr: &str,
    image: &str,
    reference: &str,
    bytes: &[u8],
) -> std::io::Result<Response> {
    request(
        addr,
        "PUT",
        &format!("/v2/{image}/manifests/{reference}"),
        &[("Content-Type", OCI_MANIFEST)],
        bytes,
    )
}

/// `GET /v2/<image>/<kind>/<reference>` (`kind`: `manifests` or `blobs`).
pub fn get(addr: &str, image: &str, kind: &str, reference: &str) -> std::io::Result<Response> {
    request(
        addr,
        "GET",
        &format!("/v2/{image}/{kind}/{reference}"),
        &[("Accept", OCI_MANIFEST)],
        b"",
    )
}
