//! Access-control settings: users, roles, tokens, the login back-off and the LDAP directory.
//! Owned here; the config module builds them from the `auth` section.

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
    /// Users in a directory, beside the local ones (which win on a name clash).
    pub ldap: Option<LdapConfig>,
    /// OpenID Connect: people signing in to the UI, CI jobs logging in with their ID tokens.
    pub oidc: Option<OidcConfig>,
}

/// `auth.oidc`: an identity provider for people, and issuers of CI jobs' tokens.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The provider people sign in to the web UI with, if any.
    pub people: Option<OidcPeople>,
    /// Whose ID tokens `docker login` takes as a password, and with which roles.
    pub workload: Vec<WorkloadRule>,
    /// PEM certificates trusted for the issuers' HTTPS, beside the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// The longest a request to an issuer may take.
    pub timeout: Duration,
}

/// The provider of the UI's single sign-on (authorization code with PKCE).
#[derive(Debug, Clone)]
pub struct OidcPeople {
    /// Exactly as the provider's discovery document spells it.
    pub issuer: String,
    pub client_id: String,
    /// Read at each code exchange; none for a public client (PKCE alone).
    pub client_secret_file: Option<std::path::PathBuf>,
    pub scopes: Vec<String>,
    /// The ID token claim that names the user.
    pub username_claim: String,
    /// The ID token claim listing the user's groups.
    pub groups_claim: String,
    /// Group name to Berth roles.
    pub group_roles: Vec<(String, Vec<String>)>,
}

/// One `auth.oidc.workload` entry: tokens of `issuer` for `audience` whose claims match.
#[derive(Debug, Clone)]
pub struct WorkloadRule {
    pub issuer: String,
    pub audience: String,
    /// Claim name to a glob its value must match (`*` any run of characters); all must.
    pub claims: Vec<(String, String)>,
    pub roles: Vec<String>,
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

/// A directory to check the passwords of users not defined here (`auth.ldap`).
#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldaps://host:636` or `ldap://host:389` (then usually with `start_tls`).
    pub url: String,
    pub start_tls: bool,
    /// The service account users are searched with; anonymous search without it.
    pub bind_dn: Option<String>,
    /// Read at each service bind, so a rotated password needs no restart (checked readable
    /// at start).
    pub bind_password_file: Option<std::path::PathBuf>,
    pub user_base: String,
    /// With `{user}`: the login name, escaped per RFC 4515.
    pub user_filter: String,
    /// Where groups are searched; no group search (so no roles) without it.
    pub group_base: Option<String>,
    /// With `{dn}` (the user's DN) and/or `{user}`, both escaped.
    pub group_filter: String,
    /// Group DN to Berth roles.
    pub group_roles: Vec<(String, Vec<String>)>,
    /// PEM certificates trusted for the directory's TLS, instead of the system's.
    pub ca_file: Option<std::path::PathBuf>,
    /// The longest a login may wait for the directory before it is told it is unavailable.
    pub timeout: Duration,
}

/// A secret read from a file: never printed, not even by `Debug`.
#[derive(Clone)]
pub struct Secret(pub String);

impl Secret {
    /// The file's first line (a trailing newline is not part of a password).
    pub fn read(path: &std::path::Path) -> std::io::Result<Secret> {
        let text = std::fs::read_to_string(path)?;
        Ok(Secret(text.lines().next().unwrap_or_default().to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}
