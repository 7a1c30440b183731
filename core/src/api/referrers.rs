//! `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose `subject` is the
//! digest, filtered by `?artifactType=`. Never a 404: no referrers is an empty index.

use http::request::Parts;
use http::{Method, StatusCode};

use super::blobs::parse_digest;
use super::response;
use super::{method_not_allowed, query, query_get, ApiResult, Target};
use crate::oci::manifest::OCI_INDEX;

pub async fn list(t: &Target, digest: &str, req: &Parts) -> ApiResult {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(method_not_allowed(&req.method));
    }
    let subject = parse_digest(digest)?;
    let mut descriptors = t.repo().referrers(&t.image, &subject).await?;
    let q = query(req);
    let filter = query_get(&q, "artifactType").filter(|f| !f.is_empty());
    if let Some(f) = filter {
        descriptors.retain(|d| d.artifact_type.as_deref() == Some(f));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    let mut r = response::json_bytes(
        StatusCode::OK,
        serde_json::to_vec(&index).unwrap_or_default(),
        OCI_INDEX,
    );
    if filter.is_some() {
        response::set(&mut r, "oci-filters-applied", "artifactType");
    }
    Ok(r)
}
