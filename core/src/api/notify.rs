//! Successful V2 requests as events (see [`crate::events`]): a manifest or blob `GET` is a
//! pull, a manifest `PUT` or a finished upload a push, a mount a mount, a `DELETE` a delete.
//! Built from the request and the response the client gets, after the fact, so a handler
//! knows nothing of events and an event never describes something that failed.

use http::request::Parts;
use http::{header, Method, StatusCode};

use super::{access, ApiResult, Conn, Registry, Target};
use crate::events::{Action, Event, RequestInfo, TargetInfo};

/// What the request was about.
pub(super) enum Subject<'a> {
    /// `/manifests/<reference>`.
    Manifest(&'a str),
    /// `/blobs/<digest>`.
    Blob(&'a str),
    /// `POST /blobs/uploads/` or a session `PUT`: a finished upload (201) or mount.
    Upload,
}

/// Blobs have no media type of their own; Distribution reports them as this.
const BLOB_MEDIA_TYPE: &str = "application/octet-stream";

fn header_str(h: &http::HeaderMap, name: impl header::AsHeaderName) -> &str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn length(h: &http::HeaderMap) -> Option<u64> {
    header_str(h, header::CONTENT_LENGTH).parse().ok()
}

impl Registry {
    /// Emits the event a request caused, if any endpoint listens and the request succeeded.
    pub(super) fn notify(
        &self,
        conn: Conn,
        req: &Parts,
        t: &Target,
        subject: Subject<'_>,
        r: &ApiResult,
    ) {
        self.replicate_push(req, t, &subject, r);
        if !self.events.enabled() {
            return;
        }
        let Ok(resp) = r else { return };
        let Some((action, target)) = describe(req, t, subject, resp) else {
            return;
        };
        let request = RequestInfo {
            id: format!("{:x}", conn.request),
            addr: access::client_ip(self, conn, req).to_string(),
            host: t
                .base
                .split_once("://")
                .map_or(t.base.as_str(), |(_, h)| h)
                .to_owned(),
            method: req.method.to_string(),
            useragent: header_str(&req.headers, header::USER_AGENT).to_owned(),
        };
        self.events
            .emit(Event::new(action, target, request, &t.actor));
    }
}

impl Registry {
    /// A tag pushed (manifest `PUT` by tag, 201), or a referrer: the push rules that follow
    /// it copy it soon.
    fn replicate_push(&self, req: &Parts, t: &Target, subject: &Subject<'_>, r: &ApiResult) {
        let (Subject::Manifest(reference), Ok(resp)) = (subject, r) else {
            return;
        };
        if req.method != Method::PUT || resp.status() != StatusCode::CREATED {
            return;
        }
        let Some(repo) = &t.entry.write_repo else {
            return;
        };
        if !reference.contains(':') {
            self.replication.pushed(repo, t.image.as_str(), reference);
        } else if let Some(subject) = resp.headers().get("oci-subject") {
            // A referrer (a signature, an SBOM) pushed by digest: its subject's referrers go.
            if let Ok(subject) = subject.to_str() {
                self.replication
                    .referrer_pushed(repo, t.image.as_str(), subject);
            }
        }
    }
}

/// A stored blob's size, handed from the upload handler to its push event through the
/// response's extensions (the `201` itself carries no size).
#[derive(Clone, Copy, Debug)]
pub struct BlobSize(pub u64);

/// The action and target of a successful request; `None` for requests that are not events
/// (HEAD, partial blob reads, upload chunks, failures).
fn describe(
    req: &Parts,
    t: &Target,
    subject: Subject<'_>,
    resp: &http::Response<super::response::Body>,
) -> Option<(Action, TargetInfo)> {
    let base = TargetInfo {
        repository: t.client_name(),
        ..TargetInfo::default()
    };
    match subject {
        Subject::Manifest(reference) => manifest_event(req, t, reference, resp, base),
        Subject::Blob(digest) => blob_event(req, t, digest, resp, base),
        Subject::Upload => upload_event(req, t, resp, base),
    }
}

/// A manifest pulled, pushed or deleted (by tag or by digest).
fn manifest_event(
    req: &Parts,
    t: &Target,
    reference: &str,
    resp: &http::Response<super::response::Body>,
    base: TargetInfo,
) -> Option<(Action, TargetInfo)> {
    let status = resp.status();
    let by_digest = reference.contains(':');
    let tag = if by_digest { "" } else { reference }.to_owned();
    // A pull describes what was served, a push what was sent.
    let (action, described) = match req.method {
        Method::GET if status == StatusCode::OK => (Action::Pull, resp.headers()),
        Method::PUT if status == StatusCode::CREATED => (Action::Push, &req.headers),
        Method::DELETE if status.is_success() => {
            let target = if by_digest {
                TargetInfo {
                    digest: reference.to_owned(),
                    ..base
                }
            } else {
                TargetInfo { tag, ..base }
            };
            return Some((Action::Delete, target));
        }
        _ => return None,
    };
    let digest = header_str(resp.headers(), "docker-content-digest");
    let target = TargetInfo {
        media_type: header_str(described, header::CONTENT_TYPE).to_owned(),
        size: length(described),
        length: length(described),
        url: t.url(&format!("manifests/{digest}")),
        digest: digest.to_owned(),
        tag,
        ..base
    };
    Some((action, target))
}

/// A whole blob read, or a blob deleted.
fn blob_event(
    req: &Parts,
    t: &Target,
    digest: &str,
    resp: &http::Response<super::response::Body>,
    base: TargetInfo,
) -> Option<(Action, TargetInfo)> {
    let status = resp.status();
    match req.method {
        Method::GET if status == StatusCode::OK => {
            let target = TargetInfo {
                media_type: BLOB_MEDIA_TYPE.to_owned(),
                size: length(resp.headers()),
                length: length(resp.headers()),
                digest: digest.to_owned(),
                url: t.url(&format!("blobs/{digest}")),
                ..base
            };
            Some((Action::Pull, target))
        }
        Method::DELETE if status.is_success() => Some((
            Action::Delete,
            TargetInfo {
                digest: digest.to_owned(),
                ..base
            },
        )),
        _ => None,
    }
}

/// A finished upload (a push) or a cross-repository mount.
fn upload_event(
    req: &Parts,
    t: &Target,
    resp: &http::Response<super::response::Body>,
    base: TargetInfo,
) -> Option<(Action, TargetInfo)> {
    if resp.status() != StatusCode::CREATED {
        return None;
    }
    let digest = header_str(resp.headers(), "docker-content-digest").to_owned();
    let query = super::query(req);
    let mount = req.method == Method::POST && super::query_get(&query, "mount").is_some();
    let from = super::query_get(&query, "from").unwrap_or("");
    let size = resp.extensions().get::<BlobSize>().map(|s| s.0);
    let target = TargetInfo {
        media_type: BLOB_MEDIA_TYPE.to_owned(),
        size,
        length: size,
        url: t.url(&format!("blobs/{digest}")),
        digest,
        from_repository: if mount {
            from.to_owned()
        } else {
            String::new()
        },
        ..base
    };
    Some((if mount { Action::Mount } else { Action::Push }, target))
}
