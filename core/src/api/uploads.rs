//! Blob uploads: `POST /v2/<name>/blobs/uploads/` and the session URL
//! `/v2/<name>/blobs/uploads/<id>` (`GET` status, `PATCH` chunk, `PUT` finish, `DELETE` cancel).
//!
//! All of the spec's flows land here: monolithic (POST then PUT, or one POST with `?digest=`),
//! chunked (PATCH with `Content-Range`, out-of-order → 416), Docker's single streamed PATCH
//! without `Content-Range`, and cross-repository mount (`?mount=&from=`, 201 or a 202 fallback).

use http::request::Parts;
use http::{header, Method, Response, StatusCode};
use http_body_util::BodyDataStream;

use super::blobs::parse_digest;
use super::range::{chunk_len, parse_content_range};
use super::response::{self, Body};
use super::{err, method_not_allowed, query, query_get, ApiError, ApiResult, Target};
use crate::oci::{ErrorCode, ImageName};
use crate::storage::ByteStream;

fn stream(body: Body) -> ByteStream {
    Box::pin(BodyDataStream::new(body))
}

fn content_length(req: &Parts) -> Option<u64> {
    req.headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// `Range: 0-<last byte>` as Distribution and the spec write it (`0-0` when empty).
fn range_value(size: u64) -> String {
    format!("0-{}", size.saturating_sub(1))
}

fn session_response(t: &Target, id: &str, size: u64, status: StatusCode) -> Response<Body> {
    let mut r = response::status(status);
    response::set(&mut r, "location", &t.url(&format!("blobs/uploads/{id}")));
    response::set(&mut r, "range", &range_value(size));
    response::set(&mut r, "docker-upload-uuid", id);
    r
}

/// `201` for a stored blob; `size`, when known, travels to its push event (not to the client).
fn created(t: &Target, digest: &crate::oci::Digest, size: Option<u64>) -> Response<Body> {
    let mut r = response::status(StatusCode::CREATED);
    response::set(&mut r, "location", &t.url(&format!("blobs/{digest}")));
    response::set(&mut r, "docker-content-digest", &digest.to_string());
    if let Some(n) = size {
        r.extensions_mut().insert(super::notify::BlobSize(n));
    }
    r
}

/// The chunk's declared start, if the client sent `Content-Range`; a malformed one is 416.
fn chunk_offset(req: &Parts) -> Result<Option<u64>, ApiError> {
    let Some(v) = req.headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let parsed = v.to_str().ok().and_then(parse_content_range);
    let Some(range) = parsed else {
        return Err(err(
            ErrorCode::BlobUploadInvalid,
            "Content-Range must be <start>-<end>",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE));
    };
    let (start, end) = range;
    // Without a length the chunk's end is unknowable until the body ends, and a short body
    // would leave the session at an offset the client never asked for (audit).
    let Some(len) = content_length(req) else {
        return Err(err(
            ErrorCode::SizeInvalid,
            format!("Content-Range {start}-{end} needs a Content-Length of the chunk"),
        ));
    };
    if len != chunk_len(range) {
        return Err(err(
            ErrorCode::SizeInvalid,
            format!("Content-Range {start}-{end} does not match Content-Length {len}"),
        ));
    }
    Ok(Some(start))
}

/// `POST /v2/<name>/blobs/uploads/`.
/// `POST /v2/<name>/blobs/uploads/`; `client` is who the session is counted against.
pub async fn start(t: &Target, req: &Parts, body: Body, client: &str) -> ApiResult {
    if req.method != Method::POST {
        return Err(method_not_allowed(&req.method));
    }
    let q = query(req);
    if let (Some(mount), Some(from)) = (query_get(&q, "mount"), query_get(&q, "from")) {
        if let Some(r) = try_mount(t, mount, from).await? {
            return Ok(r);
        }
    }
    let repo = t.repo();
    if let Some(d) = query_get(&q, "digest") {
        let digest = parse_digest(d)?;
        let id = repo.upload_start(&t.image, client).await?;
        let body = stream(body);
        let result = async {
            repo.upload_append(&t.image, &id, Some(0), body).await?;
            repo.upload_finish(&t.image, &id, &digest).await
        }
        .await;
        return match result {
            Ok(size) => Ok(created(t, &digest, Some(size))),
            Err(e) => {
                let _ = repo.upload_cancel(&t.image, &id).await;
                Err(e.into())
            }
        };
    }
    let id = repo.upload_start(&t.image, client).await?;
    Ok(session_response(t, &id, 0, StatusCode::ACCEPTED))
}

/// Mounts `digest` from `from` if it is there; `None` means "fall back to an upload".
async fn try_mount(
    t: &Target,
    mount: &str,
    from: &str,
) -> Result<Option<Response<Body>>, ApiError> {
    let Ok(digest) = mount.parse() else {
        return Ok(None);
    };
    let Ok(from) = from.parse::<ImageName>() else {
        return Ok(None);
    };
    // On the main port names carry the repository as their first component; a mount only
    // works inside one repository, so `from` must carry the same one.
    let from = if t.prefix.is_empty() {
        Some(from)
    } else {
        match from.split_first() {
            (first, Some(rest)) if first == t.prefix => Some(rest),
            _ => None,
        }
    };
    let Some(from) = from else {
        return Ok(None);
    };
    if t.repo().blob_mount(&t.image, &digest, &from).await? {
        Ok(Some(created(t, &digest, None)))
    } else {
        Ok(None)
    }
}

/// The session URL.
pub async fn session(t: &Target, id: &str, req: &Parts, body: Body) -> ApiResult {
    let repo = t.repo();
    match req.method.clone() {
        Method::GET => {
            let size = repo.upload_size(&t.image, id).await?;
            Ok(session_response(t, id, size, StatusCode::NO_CONTENT))
        }
        Method::PATCH => {
            let offset = chunk_offset(req)?;
            let size = repo
                .upload_append(&t.image, id, offset, stream(body))
                .await?;
            Ok(session_response(t, id, size, StatusCode::ACCEPTED))
        }
        Method::PUT => {
            let q = query(req);
            let digest = query_get(&q, "digest")
                .ok_or_else(|| err(ErrorCode::DigestInvalid, "the final PUT needs ?digest="))?;
            let digest = parse_digest(digest)?;
            let offset = chunk_offset(req)?;
            if content_length(req) != Some(0) {
                repo.upload_append(&t.image, id, offset, stream(body))
                    .await?;
            } else {
                // Still answer an unknown session as such before trying to finish it.
                repo.upload_size(&t.image, id).await?;
            }
            let size = repo.upload_finish(&t.image, id, &digest).await?;
            Ok(created(t, &digest, Some(size)))
        }
        Method::DELETE => {
            repo.upload_cancel(&t.image, id).await?;
            Ok(response::status(StatusCode::NO_CONTENT))
        }
        m => Err(method_not_allowed(&m)),
    }
}
