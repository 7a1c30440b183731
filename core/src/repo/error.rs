//! What a repository operation can end in, as meanings: "this blob is unknown", "a rule of the
//! repository refuses the write", "the remote rate-limits us". Which OCI code, status and
//! headers carry each to a client is decided once, in `api/error.rs`; the UI and the proxy's
//! cache read the same meanings for their own ends (a 404 page, "not here: ask the next
//! member"). No repository kind picks a wire code.

use std::time::Duration;

use crate::oci::{Digest, ImageName, Reference};
use crate::storage::metadata::MetadataError;
use crate::storage::{StorageError, UploadEndError};

/// A failure: the client's (each variant below `Metadata` names what they asked for that cannot
/// be) or ours (`Storage`, `Metadata`: logged, a 500).
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Not in this image (nor, for a proxy, at its remote — `remote` names it).
    #[error("blob {digest} is unknown{}", at_remote(remote))]
    BlobUnknown {
        digest: Digest,
        remote: Option<String>,
    },
    #[error("manifest {reference} is unknown in {image}{}", at_remote(remote))]
    ManifestUnknown {
        image: ImageName,
        reference: Reference,
        remote: Option<String>,
    },
    /// No such image where it was looked for (`place`: "hosted-a", "remote https://…").
    #[error("repository {image} is not known to {place}")]
    NameUnknown { image: ImageName, place: String },
    #[error("upload session is unknown, finished or cancelled")]
    UploadUnknown,
    /// Content is not what its digest says (`what`: "uploaded content", "the manifest").
    #[error("{what} has digest {actual}, not {expected}")]
    DigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("digest {0} uses an unsupported algorithm; use sha256")]
    UnsupportedDigest(Digest),
    /// The request body broke off before the content was whole.
    #[error("request body ended early: {0}")]
    BodyEnded(String),
    /// Content the push relied on was collected while it was being stored.
    #[error("{0} was garbage-collected while it was being stored; push it again")]
    Collected(Digest),
    /// Bytes that are no manifest of a known type; the message says why.
    #[error("{0}")]
    ManifestInvalid(String),
    /// A manifest refers to content the image lacks (`what`: "blob", "manifest", "content").
    #[error("manifest references {what} {digest}, which is not in {place}")]
    ReferenceUnknown {
        what: &'static str,
        digest: Digest,
        place: String,
    },
    /// A manifest gives a referenced blob or manifest a size it does not have.
    #[error("manifest gives {what} {digest} a size of {declared}, but it has {actual} bytes")]
    ReferenceSize {
        what: &'static str,
        digest: Digest,
        declared: u64,
        actual: u64,
    },
    /// A rule of the repository refuses the write (read-only, an immutable tag, the quota, a
    /// group without a writable member); the message names the rule and what to do instead.
    #[error("{0}")]
    Denied(String),
    /// A chunk does not start where the upload session ends.
    #[error("chunk starts at {requested} but the upload has {current} bytes")]
    OffsetMismatch { current: u64, requested: u64 },
    /// Content over a size limit.
    #[error("{what} exceeds {limit} bytes")]
    TooLarge { what: &'static str, limit: usize },
    /// A bounded resource is in use by live work; the client may retry after a while.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after: Duration,
    },
    /// The remote behind a proxy rate-limits us; `retry_after` is what it asked for.
    #[error("remote {remote} rate-limits us")]
    RateLimited {
        remote: String,
        retry_after: Option<Duration>,
    },
    /// A remote registry (behind a proxy repository) could not answer: the message names it.
    #[error("{0}")]
    Remote(String),
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Metadata(MetadataError),
}

fn at_remote(remote: &Option<String>) -> String {
    remote
        .as_ref()
        .map(|r| format!(" (remote {r})"))
        .unwrap_or_default()
}

pub type Result<T> = std::result::Result<T, RepoError>;

impl RepoError {
    /// Whether this says "not here" (so a group may ask its next member).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RepoError::BlobUnknown { .. }
                | RepoError::ManifestUnknown { .. }
                | RepoError::NameUnknown { .. }
        )
    }
}

impl From<UploadEndError> for RepoError {
    fn from(e: UploadEndError) -> Self {
        match e {
            UploadEndError::Blobs(e) => RepoError::Storage(e),
            UploadEndError::Metadata(e) => e.into(),
        }
    }
}

/// What the store's transaction found on re-checking is the client's business; the rest is
/// ours.
impl From<MetadataError> for RepoError {
    fn from(e: MetadataError) -> Self {
        match e {
            MetadataError::Missing(digest) => RepoError::ReferenceUnknown {
                what: "content",
                digest,
                place: "the image (any more)".into(),
            },
            MetadataError::Collected(d) => RepoError::Collected(d),
            other => RepoError::Metadata(other),
        }
    }
}
