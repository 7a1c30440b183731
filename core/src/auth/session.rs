//! Web UI sessions: a random secret in an `HttpOnly; SameSite=Strict` cookie, and a row in the
//! metadata store found by the secret's SHA-256.
//!
//! Not a signed token, so it cannot be taken for a registry token (or the other way round),
//! and it ends when it should, on every core at once: at logout (the row goes), when the user
//! is changed or deleted through the admin API or the UI (the user's rows go), and when the
//! password changes by any route, the config file included (the row's password stamp no
//! longer matches). A session is for the UI only: the registry and admin APIs never read the
//! cookie.

use std::time::Duration;

use sha2::Digest as _;

use super::{Auth, Identity};
use crate::storage::metadata::sessions::SessionRecord;
use crate::storage::metadata::{now_ms, MetadataError};

/// How long a web UI login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

fn id_of(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

impl Auth {
    /// Opens a session for `user` (just verified with a password); the cookie's value.
    pub async fn open_session(&self, user: &str) -> Result<String, MetadataError> {
        let stamp = self
            .dir()
            .users
            .get(user)
            .map(|u| u.stamp.clone())
            .ok_or_else(|| MetadataError::Corrupt(format!("no user {user} to sign in")))?;
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let ttl = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
        // Expired rows of anyone go now and then, so the table does not grow without bound.
        self.store.sessions_prune(now).await?;
        self.store
            .session_open(&SessionRecord {
                id: id_of(&secret),
                user: user.to_owned(),
                stamp,
                created_at: now,
                expires_at: now.saturating_add(ttl),
            })
            .await?;
        Ok(secret)
    }

    /// The user of a live session: stored, unexpired, its user still there with the same
    /// password. A store that cannot answer is logged and counts as signed out.
    pub async fn session_user(&self, secret: &str) -> Option<Identity> {
        let record = match self.store.session(&id_of(secret)).await {
            Ok(r) => r?,
            Err(e) => {
                tracing::error!(error = %e, "reading a UI session failed");
                return None;
            }
        };
        let live = record.expires_at > now_ms()
            && self
                .dir()
                .users
                .get(&record.user)
                .is_some_and(|u| u.stamp == record.stamp);
        live.then_some(Identity::User(record.user))
    }

    /// Ends one session (logout).
    pub async fn close_session(&self, secret: &str) -> Result<(), MetadataError> {
        self.store.session_close(&id_of(secret)).await.map(|_| ())
    }

    /// Ends every session of `user` (changed or deleted); how many there were.
    pub async fn end_sessions(&self, user: &str) -> Result<u64, MetadataError> {
        self.store.sessions_end(user).await
    }
}
