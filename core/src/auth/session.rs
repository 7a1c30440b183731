//! Web UI sessions: a random secret in an `HttpOnly; SameSite=Strict` cookie, and a row in the
//! metadata store found by the secret's SHA-256.
//!
//! Not a signed token, so it cannot be taken for a registry token (or the other way round),
//! and it ends when it should, on every core at once: at logout (the row goes), when the user
//! is changed or deleted through the admin API or the UI (the user's rows go), and when the
//! password changes by any route, the config file included (the row's password stamp no
//! longer matches). A session is for the UI only: the registry and admin APIs never read the
//! cookie.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use sha2::Digest as _;

use super::{Auth, Identity, UserSource};
use crate::storage::metadata::sessions::{DirectoryLogin, SessionRecord};
use crate::storage::metadata::{now_ms, MetadataError};

/// A token's use is written to the store at most this often per core: a CI job logging in on
/// every step costs one write a minute, not one per request. The time shown is therefore
/// at most this old.
const TOKEN_USE_EVERY: Duration = Duration::from_secs(60);
/// Bound on the tokens remembered as recently recorded (cleared when exceeded).
const TOKEN_SEEN_MAX: usize = 10_000;

/// How long a web UI login lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// How long a directory user's web UI login lasts: its roles are those of the sign-in, so a
/// group change reaches the UI within this.
pub const DIRECTORY_SESSION_TTL: Duration = Duration::from_secs(3600);

fn id_of(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

impl Auth {
    /// Opens a session for `who` (just verified with a password); the cookie's value. A
    /// directory user's session keeps the roles of this login and lasts
    /// [`DIRECTORY_SESSION_TTL`]: its groups are read again at the next sign-in.
    pub async fn open_session(&self, who: &Identity) -> Result<String, MetadataError> {
        let (user, stamp, roles, ttl) = match who {
            Identity::User(user) => {
                let stamp = self
                    .dir()
                    .users
                    .get(user)
                    .map(|u| u.stamp.clone())
                    .ok_or_else(|| MetadataError::Corrupt(format!("no user {user} to sign in")))?;
                (user, stamp, None, SESSION_TTL)
            }
            // An outside user's stamp names where it came from.
            Identity::External {
                user,
                roles,
                source,
            } => (
                user,
                source.as_str().to_owned(),
                Some(roles.clone()),
                DIRECTORY_SESSION_TTL,
            ),
            _ => {
                return Err(MetadataError::Corrupt(
                    "only a password opens a UI session".into(),
                ))
            }
        };
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let now = now_ms();
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        // Expired rows of anyone go now and then, so the table does not grow without bound.
        self.store.sessions_prune(now).await?;
        self.store
            .session_open(&SessionRecord {
                id: id_of(&secret),
                user: user.clone(),
                stamp,
                created_at: now,
                expires_at: now.saturating_add(ttl),
                roles,
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
        if record.expires_at <= now_ms() {
            return None;
        }
        let dir = self.dir();
        let local = dir.users.get(&record.user);
        match record.roles {
            // A directory user's, while its source is configured and no local user has taken
            // the name. The stamp names the source (empty: LDAP, before OIDC came).
            Some(roles) => {
                let source = match record.stamp.as_str() {
                    "oidc" => UserSource::Oidc,
                    _ => UserSource::Ldap,
                };
                (local.is_none() && self.source_configured(source)).then_some(Identity::External {
                    user: record.user,
                    source,
                    roles,
                })
            }
            None => local
                .is_some_and(|u| u.stamp == record.stamp)
                .then_some(Identity::User(record.user)),
        }
    }

    /// Ends one session (logout).
    pub async fn close_session(&self, secret: &str) -> Result<(), MetadataError> {
        self.store.session_close(&id_of(secret)).await.map(|_| ())
    }

    /// Ends every session of `user` (changed or deleted); how many there were.
    pub async fn end_sessions(&self, user: &str) -> Result<u64, MetadataError> {
        self.store.sessions_end(user).await
    }

    /// Records that API token `id` signed in from `client`, in the background (a login never
    /// waits for it, and a store that cannot take it only costs the record).
    pub(super) fn note_token_use(&self, id: &str, client: IpAddr) {
        {
            let mut seen = self.token_seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(id).is_some_and(|t| t.elapsed() < TOKEN_USE_EVERY) {
                return;
            }
            if seen.len() >= TOKEN_SEEN_MAX {
                seen.clear();
            }
            seen.insert(id.to_owned(), Instant::now());
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (store, id) = (self.store.clone(), id.to_owned());
        rt.spawn(async move {
            if let Err(e) = store.token_used(&id, now_ms(), &client.to_string()).await {
                tracing::warn!(error = %e, token = %id, "recording an API token's use failed");
            }
        });
    }

    /// Records a directory user's login with its roles, in the background like a token's use:
    /// at most once a minute per user on this core, unless the roles changed.
    pub(super) fn note_directory_login(
        &self,
        user: &str,
        source: UserSource,
        roles: &[String],
        client: IpAddr,
    ) {
        {
            let mut seen = self
                .directory_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let fresh = seen
                .get(user)
                .is_some_and(|(r, t)| r == roles && t.elapsed() < TOKEN_USE_EVERY);
            if fresh {
                return;
            }
            if seen.len() >= TOKEN_SEEN_MAX {
                seen.clear();
            }
            seen.insert(user.to_owned(), (roles.to_vec(), Instant::now()));
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let login = DirectoryLogin {
            user: user.to_owned(),
            source: source.as_str().into(),
            roles: roles.to_vec(),
            at: now_ms(),
            from: client.to_string(),
        };
        let store = self.store.clone();
        rt.spawn(async move {
            if let Err(e) = store.directory_login(&login).await {
                let user = &login.user;
                tracing::warn!(error = %e, %user, "recording a directory login failed");
            }
        });
    }

    /// Every directory user that logged in, with the roles of its last login.
    pub async fn directory_logins(&self) -> Result<Vec<DirectoryLogin>, MetadataError> {
        self.store.directory_logins().await
    }
}
