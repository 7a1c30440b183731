//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`, with single `Range` requests.

use futures_util::StreamExt;
use http::request::Parts;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};

use super::range::{parse_range, RangeOutcome};
use super::response;
use super::{err, method_not_allowed, ApiResult, Target};
use crate::oci::{Digest, ErrorCode};

/// Parses a digest from a path, as the spec wants: malformed is `DIGEST_INVALID` (400).
pub fn parse_digest(s: &str) -> Result<Digest, super::ApiError> {
    s.parse()
        .map_err(|e| err(ErrorCode::DigestInvalid, format!("{e}")))
}

pub async fn handle(t: &Target, digest: &str, req: &Parts) -> ApiResult {
    let digest = match parse_digest(digest) {
        Ok(d) => d,
        // As for manifests: what cannot be spelled is not there (404); a DELETE keeps the 400.
        Err(_) if matches!(req.method, Method::GET | Method::HEAD) => {
            return Err(err(
                ErrorCode::BlobUnknown,
                format!("blob {digest:?} is unknown: it is not a valid digest"),
            ))
        }
        Err(e) => return Err(e),
    };
    match req.method {
        Method::GET | Method::HEAD => get(t, &digest, req).await,
        Method::DELETE => {
            t.repo().blob_delete(&t.image, &digest).await?;
            Ok(response::status(StatusCode::ACCEPTED))
        }
        ref m => Err(method_not_allowed(m)),
    }
}

async fn get(t: &Target, digest: &Digest, req: &Parts) -> ApiResult {
    let size = t.repo().blob_size(&t.image, digest).await?;
    let range = req
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(parse_range);
    let outcome = match range {
        None | Some(Ok(None)) => RangeOutcome::Full,
        Some(Ok(Some(r))) => r.resolve(size),
        Some(Err(_)) => RangeOutcome::Unsatisfiable,
    };
    let (status, start, len) = match outcome {
        RangeOutcome::Full => (StatusCode::OK, 0, size),
        RangeOutcome::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeOutcome::Unsatisfiable => {
            let mut r = response::status(StatusCode::RANGE_NOT_SATISFIABLE);
            response::set(&mut r, "content-range", &format!("bytes */{size}"));
            return Ok(r);
        }
    };
    if req.method == Method::GET {
        if let Some(url) = t.repo().blob_redirect(&t.image, digest).await? {
            let mut r = response::status(StatusCode::TEMPORARY_REDIRECT);
            response::set(&mut r, "location", &url);
            response::set(&mut r, "docker-content-digest", &digest.to_string());
            return Ok(r);
        }
    }
    let body = if req.method == Method::HEAD || len == 0 {
        response::empty()
    } else {
        let stream = t.repo().blob_read(&t.image, digest, start, len).await?;
        BodyExt::boxed_unsync(StreamBody::new(
            stream.map(|r| r.map(http_body::Frame::data)),
        ))
    };
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    response::set(&mut r, "content-length", &len.to_string());
    response::set(&mut r, "content-type", "application/octet-stream");
    response::set(&mut r, "docker-content-digest", &digest.to_string());
    response::set(&mut r, "etag", &format!("\"{digest}\""));
    response::set(&mut r, "accept-ranges", "bytes");
    response::set(&mut r, "cache-control", "max-age=31536000");
    if status == StatusCode::PARTIAL_CONTENT {
        response::set(
            &mut r,
            "content-range",
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(r)
}
