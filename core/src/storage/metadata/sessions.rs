//! The sessions half of the metadata contract: web UI sign-ins live in the metadata store, not
//! in a signed cookie, so that a logout, a password change or a deleted user ends them on every
//! core sharing the database, on the next request.
//!
//! A session is found by the SHA-256 of its cookie's secret: someone who reads the database
//! learns who is signed in, not a cookie that would sign them in.
//!
//! The last use of each API token lives here too, and the last login of each directory user:
//! like a session, each is about who signs in, and changes far more often than settings do.

use async_trait::async_trait;

use super::Result;

/// One signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hex SHA-256 of the cookie's secret.
    pub id: String,
    pub user: String,
    /// A fingerprint of the user's password hash at sign-in (see `auth::session`).
    pub stamp: String,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub expires_at: i64,
    /// A directory user's session: the roles of its login (`None` for a local user).
    pub roles: Option<Vec<String>>,
}

/// When and from where an API token was used last.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TokenUse {
    /// Unix milliseconds.
    pub at: i64,
    /// The client's address.
    pub from: String,
}

/// A directory user's last login, as every core shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DirectoryLogin {
    pub user: String,
    /// Where the user is defined: `ldap`.
    pub source: String,
    /// The roles its groups gave it at that login.
    pub roles: Vec<String>,
    /// Unix milliseconds.
    pub at: i64,
    /// The client's address.
    pub from: String,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Stores a new session.
    async fn session_open(&self, s: &SessionRecord) -> Result<()>;
    /// The session with this id, expired or not (the caller checks).
    async fn session(&self, id: &str) -> Result<Option<SessionRecord>>;
    /// Ends one session; `false` if there was none.
    async fn session_close(&self, id: &str) -> Result<bool>;
    /// Ends every session of `user`; how many there were.
    async fn sessions_end(&self, user: &str) -> Result<u64>;
    /// Forgets sessions that expired before `now_ms`; how many.
    async fn sessions_prune(&self, now_ms: i64) -> Result<u64>;
    /// Records a use of the API token `id`.
    async fn token_used(&self, id: &str, at_ms: i64, from: &str) -> Result<()>;
    /// The last use of every API token that has been used, by id.
    async fn token_uses(&self) -> Result<std::collections::HashMap<String, TokenUse>>;
    /// Forgets the use of a revoked token.
    async fn token_use_forget(&self, id: &str) -> Result<()>;
    /// Records a directory user's login (replacing the last one).
    async fn directory_login(&self, login: &DirectoryLogin) -> Result<()>;
    /// The last login of every directory user that logged in, by name.
    async fn directory_logins(&self) -> Result<Vec<DirectoryLogin>>;
}
