//! What a failed admin request is answered with. The admin API has its own small vocabulary —
//! it is not the registry protocol, and the Distribution spec's list of error codes is closed
//! — in the same JSON shape (`{"errors":[{"code","message"}]}`, documented in `openapi.json`)
//! so that one client-side reader handles both.

use http::{Response, StatusCode};

use crate::http::{response, Body};

/// What went wrong, as an admin client acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A bad body or parameter; the message names the key.
    Invalid,
    /// No credentials, or not an admin's.
    Unauthorized,
    /// Refused whoever asks (a write from another site).
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// Clashes with another setting, a process holding a port, or a run in progress.
    Conflict,
    /// A write that is not JSON.
    UnsupportedMediaType,
    /// The login back-off; `Retry-After` says when.
    TooManyRequests,
    /// Something we depend on cannot answer now (the LDAP directory); `Retry-After` says when.
    Unavailable,
    /// Ours: logged; the answer carries only the request id.
    Internal,
}

impl Problem {
    pub fn status(self) -> StatusCode {
        match self {
            Problem::Invalid => StatusCode::BAD_REQUEST,
            Problem::Unauthorized => StatusCode::UNAUTHORIZED,
            Problem::Forbidden => StatusCode::FORBIDDEN,
            Problem::NotFound => StatusCode::NOT_FOUND,
            Problem::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Problem::Conflict => StatusCode::CONFLICT,
            Problem::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Problem::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Problem::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Problem::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `code` of the error body.
    pub fn code(self) -> &'static str {
        match self {
            Problem::Invalid => "INVALID",
            Problem::Unauthorized => "UNAUTHORIZED",
            Problem::Forbidden => "FORBIDDEN",
            Problem::NotFound => "NOT_FOUND",
            Problem::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Problem::Conflict => "CONFLICT",
            Problem::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Problem::TooManyRequests => "TOO_MANY_REQUESTS",
            Problem::Unavailable => "UNAVAILABLE",
            Problem::Internal => "INTERNAL",
        }
    }
}

/// A failed admin request.
#[derive(Debug)]
pub struct AdminError {
    pub problem: Problem,
    pub message: String,
    headers: Vec<(&'static str, String)>,
}

/// Admin handler results.
pub type AdminResult = Result<Response<Body>, AdminError>;

impl AdminError {
    pub fn new(problem: Problem, message: impl Into<String>) -> AdminError {
        AdminError {
            problem,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> AdminError {
        AdminError::new(Problem::Invalid, message)
    }

    pub fn not_found(message: impl Into<String>) -> AdminError {
        AdminError::new(Problem::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> AdminError {
        AdminError::new(Problem::Conflict, message)
    }

    /// Our failure: the detail goes to the log, not to the client.
    pub fn internal(e: impl std::fmt::Display) -> AdminError {
        AdminError::new(Problem::Internal, e.to_string())
    }

    /// Adds a response header (a challenge, `Allow`, `Retry-After`).
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> AdminError {
        self.headers.push((name, value.into()));
        self
    }

    /// The answer; an internal failure is logged with the request id it quotes.
    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let message = if self.problem == Problem::Internal {
            tracing::error!(error = %self.message, "internal error");
            format!("internal error; see the registry log (request {request_id})")
        } else {
            self.message
        };
        let body = serde_json::json!({
            "errors": [{ "code": self.problem.code(), "message": message }],
        });
        let mut r = response::json(self.problem.status(), &body);
        for (name, value) in &self.headers {
            response::set(&mut r, name, value);
        }
        r
    }
}
