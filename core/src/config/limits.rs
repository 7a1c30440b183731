//! The `limits` section: protections against slow, abandoned or abusive clients.

use std::time::Duration;

use super::raw::RawLimits;
use crate::repo::upload_cap::UploadLimits;

/// Protections against slow, abandoned or abusive clients.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub body_idle_timeout: Duration,
    /// The cap on open upload sessions per repository and per client.
    pub uploads: UploadLimits,
    pub upload_expiry: Duration,
    /// Connections served at once per listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(300),
            uploads: UploadLimits {
                max_sessions: 1000,
                per_client: 100,
                idle_after: Duration::from_secs(120),
            },
            upload_expiry: Duration::from_secs(24 * 3600),
            max_connections: 10_000,
        }
    }
}

impl Limits {
    pub(super) fn from_raw(raw: RawLimits) -> Limits {
        let d = Limits::default();
        let max_sessions = raw
            .max_upload_sessions
            .unwrap_or(d.uploads.max_sessions)
            .max(1);
        Limits {
            header_read_timeout: raw
                .header_read_timeout
                .map_or(d.header_read_timeout, Into::into),
            body_idle_timeout: raw
                .body_idle_timeout
                .map_or(d.body_idle_timeout, Into::into),
            uploads: UploadLimits {
                max_sessions,
                // Default share: a tenth of the cap, at least one and at most the cap.
                per_client: raw
                    .max_upload_sessions_per_client
                    .unwrap_or((max_sessions / 10).max(1))
                    .clamp(1, max_sessions),
                idle_after: raw
                    .upload_idle_after
                    .map_or(d.uploads.idle_after, Into::into),
            },
            upload_expiry: raw.upload_expiry.map_or(d.upload_expiry, Into::into),
            max_connections: raw.max_connections.unwrap_or(d.max_connections).max(1),
        }
    }
}
