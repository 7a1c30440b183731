//! A proxy repository's settings: its remote, how long answers are trusted, and the bounds on
//! every remote call. Owned here (config builds them, never the other way round).

use std::path::PathBuf;
use std::time::Duration;

/// A proxy repository's remote and cache settings.
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Base URL without a trailing slash.
    pub url: String,
    pub username: Option<String>,
    /// Read from `password_file` at load time; never logged.
    pub password: Option<String>,
    pub ca_file: Option<PathBuf>,
    /// How long a remote tag list (and V1 search answer) is reused.
    pub content_max_age: Duration,
    /// How long a tag is trusted before it is revalidated with a HEAD.
    pub metadata_max_age: Duration,
    /// How long "not found" answers from the remote are remembered.
    pub negative_cache_ttl: Duration,
    /// Consecutive remote failures before the remote is blocked.
    pub auto_block_after: u32,
    /// How long the remote stays blocked.
    pub auto_block_for: Duration,
    pub timeouts: RemoteTimeouts,
    /// Blob fetches from the remote at once; more wait their turn. Each holds up to 24 MiB of
    /// buffers (read-ahead and the window followers are served from).
    pub max_concurrent_fetches: usize,
}

/// Bounds on every call to the remote, so a remote that accepts and never answers cannot
/// wedge the repository (audit) and counts as a failure for auto-blocking.
#[derive(Debug, Clone, Copy)]
pub struct RemoteTimeouts {
    /// TCP (and TLS) connection set-up.
    pub connect: Duration,
    /// From sending a request to the response headers.
    pub response: Duration,
    /// Longest pause between two pieces of a response body.
    pub idle: Duration,
}

impl Default for RemoteTimeouts {
    fn default() -> Self {
        RemoteTimeouts {
            connect: Duration::from_secs(10),
            response: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        }
    }
}

impl ProxySettings {
    /// Settings for `url` with every default (what the YAML gives when only `url` is set).
    pub fn new(url: impl Into<String>) -> ProxySettings {
        ProxySettings {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            content_max_age: Duration::from_secs(24 * 3600),
            metadata_max_age: Duration::from_secs(30 * 60),
            negative_cache_ttl: Duration::from_secs(60),
            auto_block_after: 5,
            auto_block_for: Duration::from_secs(60),
            timeouts: RemoteTimeouts::default(),
            max_concurrent_fetches: 16,
        }
    }
}
