//! Building responses: bodies, plain and JSON answers, headers.

use std::io;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

/// Request and response body type of every front-end.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

pub const API_VERSION: &str = "Docker-Distribution-API-Version";

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Wraps a request body so that a stall of `idle` between frames ends it with a timeout
/// error: a client that trickles a body cannot hold a connection and a session forever.
pub fn idle_timeout(body: Body, idle: std::time::Duration) -> Body {
    use futures_util::StreamExt;
    let frames = http_body_util::BodyStream::new(body);
    let guarded = futures_util::stream::unfold(Some(frames), move |state| async move {
        let mut frames = state?;
        match tokio::time::timeout(idle, frames.next()).await {
            Ok(Some(frame)) => Some((frame, Some(frames))),
            Ok(None) => None,
            Err(_) => Some((
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("request body stalled for {} s", idle.as_secs()),
                )),
                None,
            )),
        }
    });
    http_body_util::StreamBody::new(guarded).boxed_unsync()
}

/// A response with a status and no body.
pub fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// A JSON response.
pub fn json(code: StatusCode, value: &serde_json::Value) -> Response<Body> {
    json_bytes(
        code,
        serde_json::to_vec(value).unwrap_or_default(),
        "application/json",
    )
}

/// A JSON response with a given content type (e.g. an OCI index).
pub fn json_bytes(code: StatusCode, bytes: Vec<u8>, content_type: &'static str) -> Response<Body> {
    let len = bytes.len();
    let mut r = Response::new(full(bytes));
    *r.status_mut() = code;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// Sets a header from a string we built ourselves; a value that is not a valid header (which
/// our values never are) is dropped rather than panicking.
pub fn set(r: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}
