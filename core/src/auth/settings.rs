//! Access-control settings: users, roles, tokens and the login back-off. Owned here; the config
//! module builds them from the `auth` section.

use std::time::Duration;

use super::{LimiterConfig, Privilege};

/// Users, roles and token settings.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub users: Vec<UserConfig>,
    pub roles: Vec<RoleConfig>,
    /// Lifetime of bearer tokens from the realm.
    pub token_ttl: Duration,
    /// A key file every core reads (`auth.token_key_file`) instead of the store's key.
    pub token_key_file: Option<std::path::PathBuf>,
    pub limiter: LimiterConfig,
}

/// One user, in the config file's shape (`auth.users` entries; run-time settings too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string.
    pub password_hash: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// One role, in the config file's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub name: String,
    #[serde(default)]
    pub privileges: Vec<Privilege>,
}
