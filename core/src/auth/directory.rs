//! Who exists: users, roles and API tokens, replaced whole when an admin changes them at run
//! time (requests in flight keep the directory they started with).
//!
//! API tokens are for CI: `berth_<id>_<secret>`, given as the password of a Basic login (so
//! `docker login -u alice -p berth_...` works), shown once when created and stored only as the
//! SHA-256 of the secret — 32 random bytes need no slow hash, so checking one costs
//! microseconds, not argon2's tens of milliseconds. A token may be narrowed to some
//! privileges; it never grants more than its user has, the admin API only if it was given the
//! admin privilege on `*` explicitly (and its user is an admin), and revoking it takes effect on
//! the next request, for bearer tokens obtained with it too.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use super::{glob, Action, Privilege, RoleConfig, UserConfig};

/// Prefix of every API token, so scanners and people can tell one from a password.
pub const TOKEN_PREFIX: &str = "berth_";

/// A stored API token (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub user: String,
    /// What the owner called it (`ci-deploy`).
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Empty: everything the user may do (but the admin API).
    #[serde(default)]
    pub privileges: Vec<Privilege>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None`: until revoked.
    pub expires_at: Option<i64>,
}

impl ApiToken {
    /// A new token for `user`: the record to store and the token to show once.
    pub fn generate(
        user: &str,
        name: &str,
        privileges: Vec<Privilege>,
        expires_at: Option<i64>,
    ) -> (ApiToken, String) {
        let id = hex::encode(rand::random::<[u8; 8]>());
        let secret = hex::encode(rand::random::<[u8; 32]>());
        let token = ApiToken {
            id: id.clone(),
            user: user.to_owned(),
            name: name.to_owned(),
            secret_sha256: hex::encode(sha2::Sha256::digest(secret.as_bytes())),
            privileges,
            created_at: crate::storage::metadata::now(),
            expires_at,
        };
        (token, format!("{TOKEN_PREFIX}{id}_{secret}"))
    }

    /// Whether `secret` is this token's and it has not expired.
    fn accepts(&self, secret: &str, now: i64) -> bool {
        let given = hex::encode(sha2::Sha256::digest(secret.as_bytes()));
        // Comparing digests leaks nothing useful about the secret.
        given == self.secret_sha256 && self.expires_at.is_none_or(|e| e > now)
    }

    /// Whether the token itself was given the admin privilege on every repository (an empty
    /// list, "whatever the user may do", does not count: the admin API needs it explicitly).
    pub fn grants_admin(&self) -> bool {
        self.privileges
            .iter()
            .any(|p| p.pattern == "*" && p.actions.contains(&Action::Admin))
    }

    /// Whether the token's own privileges allow `action` on `repo` (the user's are checked
    /// too, by the caller).
    pub fn allows(&self, repo: &str, action: Action) -> bool {
        self.privileges.is_empty()
            || self.privileges.iter().any(|p| {
                glob(&p.pattern, repo)
                    && (p.actions.contains(&action) || p.actions.contains(&Action::Admin))
            })
    }
}

/// Splits `berth_<id>_<secret>`.
pub fn parse_token(password: &str) -> Option<(&str, &str)> {
    let rest = password.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

pub(super) struct User {
    pub hash: Arc<str>,
    /// A fingerprint of `hash` (see [`password_stamp`]).
    pub stamp: String,
    pub roles: Vec<String>,
}

/// A short fingerprint of a password hash, carried by sessions and by registry tokens that a
/// password obtained: when the password changes (by any route, the config file included) the
/// fingerprint no longer matches and they end. It reveals nothing usable about the hash.
pub fn password_stamp(hash: &str) -> String {
    let mut h = sha2::Sha256::new();
    h.update(b"berth password stamp\0");
    h.update(hash.as_bytes());
    hex::encode(&h.finalize()[..12])
}

/// Users, roles and tokens at one moment.
#[derive(Default)]
pub(super) struct Directory {
    pub users: HashMap<String, User>,
    pub roles: HashMap<String, Vec<Privilege>>,
    pub tokens: HashMap<String, ApiToken>,
}

impl Directory {
    pub fn new(users: &[UserConfig], roles: &[RoleConfig], tokens: Vec<ApiToken>) -> Directory {
        Directory {
            users: users
                .iter()
                .map(|u| {
                    let user = User {
                        hash: u.password_hash.as_str().into(),
                        stamp: password_stamp(&u.password_hash),
                        roles: u.roles.clone(),
                    };
                    (u.name.clone(), user)
                })
                .collect(),
            roles: roles
                .iter()
                .map(|r| (r.name.clone(), r.privileges.clone()))
                .collect(),
            tokens: tokens.into_iter().map(|t| (t.id.clone(), t)).collect(),
        }
    }

    /// The user a token belongs to, if the token is valid and its user still exists.
    pub fn token_user(&self, id: &str, secret: &str, now: i64) -> Option<&ApiToken> {
        let t = self.tokens.get(id)?;
        (t.accepts(secret, now) && self.users.contains_key(&t.user)).then_some(t)
    }

    /// Token `id` of `user`, if it is still stored, unexpired, and its user exists: what every
    /// use of a token (or of a bearer token obtained with it) is checked against.
    pub fn live_token(&self, id: &str, user: &str, now: i64) -> Option<&ApiToken> {
        let t = self.tokens.get(id)?;
        (t.user == user && t.expires_at.is_none_or(|e| e > now) && self.users.contains_key(user))
            .then_some(t)
    }

    /// Every privilege a user's roles give.
    pub fn privileges<'a>(&'a self, user: &str) -> impl Iterator<Item = &'a Privilege> + 'a {
        self.users
            .get(user)
            .into_iter()
            .flat_map(|u| u.roles.iter())
            .filter_map(|r| self.roles.get(r))
            .flatten()
    }

    /// Every privilege these roles give (a directory user's, mapped from its groups).
    pub fn role_privileges<'a>(
        &'a self,
        roles: &'a [String],
    ) -> impl Iterator<Item = &'a Privilege> + 'a {
        roles.iter().filter_map(|r| self.roles.get(r)).flatten()
    }
}
