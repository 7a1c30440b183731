//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.
//!
//! Manifests are served byte-exact with the media type they were pushed with. Content
//! negotiation follows Distribution: when a client's `Accept` names manifest types and excludes
//! the stored index type, a tag resolves to the index's `linux/amd64` entry if the client
//! accepts that; otherwise the client is told the manifest is unknown in a form it accepts.

use bytes::Bytes;
use http::request::Parts;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Limited};

use super::response::{self, Body};
use super::ApiError;
use super::{err, method_not_allowed, ApiResult, Target};
use crate::oci::manifest::MAX_MANIFEST_BYTES;
use crate::oci::{ErrorCode, Reference};
use crate::repo::Manifest;

fn parse_reference(s: &str) -> Result<Reference, ApiError> {
    s.parse().map_err(|e| match e {
        crate::oci::reference::ReferenceError::Digest(e) => {
            err(ErrorCode::DigestInvalid, format!("{e}"))
        }
        crate::oci::reference::ReferenceError::Tag(e) => {
            err(ErrorCode::ManifestInvalid, format!("{e}"))
        }
    })
}

pub async fn handle(t: &Target, reference: &str, req: &Parts, body: Body) -> ApiResult {
    let reading = matches!(req.method, Method::GET | Method::HEAD);
    let reference = match parse_reference(reference) {
        Ok(r) => r,
        // A reference that cannot be spelled names nothing: reads get 404 MANIFEST_UNKNOWN
        // (the conformance suite asks for `.INVALID_MANIFEST_NAME`); writes keep the 400.
        Err(_) if reading => {
            return Err(err(
                ErrorCode::ManifestUnknown,
                format!("manifest {reference:?} is unknown: it is neither a tag nor a digest"),
            ))
        }
        Err(e) => return Err(e),
    };
    match req.method.clone() {
        Method::GET | Method::HEAD => get(t, &reference, req).await,
        Method::PUT => put(t, &reference, req, body).await,
        Method::DELETE => {
            t.repo()
                .manifest_delete(&t.image, &reference, &t.actor)
                .await?;
            Ok(response::status(StatusCode::ACCEPTED))
        }
        m => Err(method_not_allowed(&m)),
    }
}

/// The manifest media types a client listed in `Accept`; `None` if it accepts anything.
fn accepted(req: &Parts) -> Option<Vec<String>> {
    let mut types = Vec::new();
    for v in req.headers.get_all(header::ACCEPT) {
        let Ok(v) = v.to_str() else { continue };
        for part in v.split(',') {
            let t = part.split(';').next().unwrap_or("").trim();
            if t == "*/*" || t == "application/*" || t == "application/json" {
                return None;
            }
            if !t.is_empty() {
                types.push(t.to_owned());
            }
        }
    }
    (!types.is_empty()).then_some(types)
}

/// Picks the `linux/amd64` entry of an index, for clients that cannot read indexes.
fn default_platform_child(index: &Manifest, accept: &[String]) -> Option<crate::oci::Digest> {
    let v: serde_json::Value = serde_json::from_slice(&index.bytes).ok()?;
    v.get("manifests")?.as_array()?.iter().find_map(|m| {
        let p = m.get("platform")?;
        let is_default =
            p.get("os")?.as_str()? == "linux" && p.get("architecture")?.as_str()? == "amd64";
        let mt = m.get("mediaType")?.as_str()?;
        if is_default && accept.iter().any(|a| a == mt) {
            m.get("digest")?.as_str()?.parse().ok()
        } else {
            None
        }
    })
}

async fn get(t: &Target, reference: &Reference, req: &Parts) -> ApiResult {
    let mut m = t.repo().manifest(&t.image, reference).await?;
    if let Some(accept) = accepted(req) {
        if !accept.contains(&m.media_type) {
            let child = match reference {
                Reference::Tag(_) => default_platform_child(&m, &accept),
                Reference::Digest(_) => None,
            };
            match child {
                Some(d) => m = t.repo().manifest(&t.image, &Reference::Digest(d)).await?,
                None => {
                    return Err(err(
                        ErrorCode::ManifestUnknown,
                        format!(
                            "manifest {reference} is {}, which is not among the accepted types",
                            m.media_type
                        ),
                    ))
                }
            }
        }
    }
    let len = m.bytes.len();
    let body = if req.method == Method::HEAD {
        response::empty()
    } else {
        response::full(m.bytes)
    };
    let mut r = http::Response::new(body);
    response::set(&mut r, "content-type", &m.media_type);
    response::set(&mut r, "content-length", &len.to_string());
    response::set(&mut r, "docker-content-digest", &m.digest.to_string());
    response::set(&mut r, "etag", &format!("\"{}\"", m.digest));
    Ok(r)
}

async fn put(t: &Target, reference: &Reference, req: &Parts, body: Body) -> ApiResult {
    let too_big = || {
        err(
            ErrorCode::ManifestInvalid,
            format!("manifest exceeds the {MAX_MANIFEST_BYTES}-byte limit"),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let declared_len = req
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared_len.is_some_and(|l| l > MAX_MANIFEST_BYTES as u64) {
        return Err(too_big());
    }
    let content_type = req
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes: Bytes = match Limited::new(body, MAX_MANIFEST_BYTES).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return Err(too_big()),
        Err(e) => {
            return Err(err(
                ErrorCode::ManifestInvalid,
                format!("reading the manifest failed: {e}"),
            ))
        }
    };
    let pushed = t
        .repo()
        .manifest_put(
            &t.image,
            reference,
            content_type.as_deref(),
            bytes,
            &t.actor,
        )
        .await?;
    let mut r = response::status(StatusCode::CREATED);
    response::set(
        &mut r,
        "location",
        &t.url(&format!("manifests/{}", pushed.digest)),
    );
    response::set(&mut r, "docker-content-digest", &pushed.digest.to_string());
    if let Some(s) = &pushed.subject {
        response::set(&mut r, "oci-subject", &s.to_string());
    }
    Ok(r)
}
