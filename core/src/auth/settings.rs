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
    pub limiter: LimiterConfig,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string.
    pub password_hash: String,
    pub roles: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RoleConfig {
    pub name: String,
    pub privileges: Vec<Privilege>,
}
