//! What a failed request is answered with: the one place that turns the repository layer's
//! meanings ("blob unknown", "the upload is at another offset", "the remote is down") into a
//! status code, the spec's error body, and headers such as `WWW-Authenticate`, `Allow` and
//! `Retry-After`. Lower layers never choose a status.

use std::time::Duration;

use http::{Response, StatusCode};

use crate::http::response::{json, set};
use crate::http::Body;
use crate::oci::{Digest, ErrorCode, RegistryError};
use crate::repo::RepoError;
use crate::storage::metadata::MetadataError;
use crate::storage::StorageError;

/// A request's failure as the API layer answers it.
#[derive(Debug)]
pub enum ApiError {
    /// The client's mistake or a refusal: a spec error body with a status and headers.
    Client {
        error: RegistryError,
        status: StatusCode,
        headers: Vec<(&'static str, String)>,
    },
    /// Ours: logged, and a 500 that carries only the request id.
    Internal(String),
    /// A remote registry (behind a proxy repository) could not answer: a 502 naming it.
    Remote(String),
    /// A store this core needs is unreachable: a 503 saying which, with `Retry-After`, so
    /// clients and the edge try again (or elsewhere) instead of waiting.
    Unavailable(String),
}

/// What a 503 asks clients to wait.
const UNAVAILABLE_RETRY_SECS: &str = "5";

impl ApiError {
    /// A spec error with the code's usual status.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let error = RegistryError::new(code, message);
        ApiError::Client {
            status: code.status(),
            error,
            headers: Vec::new(),
        }
    }

    /// A spec error whose detail names the digest it is about.
    fn with_digest(code: ErrorCode, message: String, digest: &Digest) -> ApiError {
        let error = RegistryError::new(code, message)
            .with_detail(serde_json::json!({ "digest": digest.to_string() }));
        ApiError::Client {
            status: code.status(),
            error,
            headers: Vec::new(),
        }
    }

    /// The same error with another status (413 for a huge manifest, 416 for a bad range).
    pub fn with_status(mut self, s: StatusCode) -> ApiError {
        if let ApiError::Client { status, .. } = &mut self {
            *status = s;
        }
        self
    }

    /// Adds a response header (a challenge, `Allow`, `Retry-After`).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        if let ApiError::Client { headers, .. } = &mut self {
            headers.push((name, value.into()));
        }
        self
    }

    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after(self, after: Duration) -> ApiError {
        let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
        self.with_header("retry-after", secs.max(1).to_string())
    }

    /// The spec error code, if this is a client error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ApiError::Client { error, .. } => Some(error.code),
            _ => None,
        }
    }
}

impl ApiError {
    /// The answer; internal failures are logged with the request id the 500 quotes.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        match self {
            ApiError::Client {
                error,
                status,
                headers,
            } => {
                let mut r = json(status, &error.body());
                for (name, value) in &headers {
                    set(&mut r, name, value);
                }
                r
            }
            ApiError::Internal(e) => {
                tracing::error!(error = %e, "internal error");
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &serde_json::json!({
                        "errors": [],
                        "message": "internal error; see the registry log",
                        "request_id": request_id,
                    }),
                )
            }
            ApiError::Unavailable(message) => {
                tracing::warn!(error = %message, "unavailable");
                let mut r = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &serde_json::json!({
                        "errors": [{ "code": "UNAVAILABLE", "message": message, "detail": null }],
                    }),
                );
                set(&mut r, "retry-after", UNAVAILABLE_RETRY_SECS);
                r
            }
            ApiError::Remote(message) => {
                tracing::warn!(error = %message, "remote failure");
                json(
                    StatusCode::BAD_GATEWAY,
                    &serde_json::json!({ "errors": [], "message": message }),
                )
            }
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> ApiError {
        use ErrorCode as C;
        let message = e.to_string();
        let code = match &e {
            RepoError::BlobUnknown { .. } => C::BlobUnknown,
            RepoError::ManifestUnknown { .. } => C::ManifestUnknown,
            RepoError::NameUnknown { .. } => C::NameUnknown,
            RepoError::UploadUnknown => C::BlobUploadUnknown,
            RepoError::DigestMismatch { .. } | RepoError::UnsupportedDigest(_) => C::DigestInvalid,
            RepoError::BodyEnded(_) | RepoError::Collected(_) => C::BlobUploadInvalid,
            RepoError::ManifestInvalid(_) => C::ManifestInvalid,
            RepoError::ReferenceUnknown { digest, .. } => {
                return ApiError::with_digest(C::ManifestBlobUnknown, message, digest)
            }
            RepoError::ReferenceSize { digest, .. } => {
                return ApiError::with_digest(C::ManifestInvalid, message, digest)
            }
            RepoError::Denied(_) => C::Denied,
            RepoError::OffsetMismatch { .. } => {
                return ApiError::new(C::BlobUploadInvalid, message)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
            }
            RepoError::TooLarge { .. } => {
                return ApiError::new(C::ManifestInvalid, message)
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            RepoError::Busy { retry_after, .. } => {
                return ApiError::new(C::TooManyRequests, message).retry_after(*retry_after)
            }
            RepoError::RateLimited { retry_after, .. } => {
                let error = ApiError::new(C::TooManyRequests, message);
                return match retry_after {
                    Some(after) => error.retry_after(*after),
                    None => error,
                };
            }
            RepoError::Metadata(MetadataError::Unavailable(_))
            | RepoError::Storage(StorageError::Unavailable(_)) => {
                return ApiError::Unavailable(message)
            }
            RepoError::Storage(_) | RepoError::Metadata(_) => return ApiError::Internal(message),
            RepoError::Remote(_) => return ApiError::Remote(message),
        };
        ApiError::new(code, message)
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        ApiError::from(RepoError::from(e))
    }
}
