//! Access control: users, roles and privileges from the config, HTTP Basic on every port, and
//! a Docker bearer-token realm (`/v2/token`) that hands out short-lived signed tokens holding
//! only the granted scopes.
//!
//! Identity is established per request (a Basic password checked with argon2, or a token whose
//! signature and expiry are checked); authorisation then asks whether that identity may do the
//! action on the repository. Unknown users cost the same argon2 verification as wrong
//! passwords, failed logins are rate-limited per client address and user name, and neither
//! passwords nor tokens are ever logged.
//!
//! # Each credential means what it was issued for
//! - a **password** (Basic) is a user, with the user's roles;
//! - an **API token** (Basic, `berth_...` as the password) is the user narrowed by the token's
//!   privileges, checked on every use;
//! - a **registry token** (Bearer, from the realm) holds only its grants, and only while what
//!   it was obtained with still stands: its user exists, its API token is not revoked or
//!   expired, its password has not changed; privileges are checked again on every use;
//! - a **UI session** (cookie) is a row in the metadata store, for the web UI only.
//!
//! # Layout
//! - this file: identities, the directory in force; `login.rs`: logins, local and LDAP
//!   (`ldap.rs`: the directory's side);
//! - `decide.rs`: whether an identity (with a registry token's grants) may do an action;
//! - `bearer.rs`: registry tokens issued and checked; `token.rs`: their signature;
//!   `keys.rs`: which key signs, one for every core on a metadata store;
//! - `session.rs`: UI sessions; `limiter.rs`: the login back-off; `directory.rs`: users,
//!   roles and API tokens.

mod bearer;
mod decide;
mod directory;
pub mod keys;
pub mod ldap;
mod limiter;
mod login;
pub mod oidc;
pub mod password;
mod session;
mod settings;
pub mod token;

use std::collections::{HashMap, HashSet};

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::oci::RepoName;
use crate::storage::metadata::MetadataStore;
use directory::Directory;
pub use directory::{parse_token, ApiToken, TOKEN_PREFIX};
pub use keys::{KeyError, KeyRing, KeySource};
use limiter::Limiter;
pub use limiter::LimiterConfig;
pub use session::{DIRECTORY_SESSION_TTL, SESSION_TTL};
pub use settings::{
    AuthConfig, LdapConfig, OidcConfig, OidcPeople, RoleConfig, Secret, UserConfig, WorkloadRule,
};
pub use token::{Claims, Grant, Signer};

/// What a request wants to do to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Write,
    Delete,
    Admin,
}

impl Action {
    /// The Docker scope action for it.
    pub fn scope_name(self) -> &'static str {
        match self {
            Action::Read => "pull",
            Action::Write => "push",
            Action::Delete => "delete",
            Action::Admin => "*",
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    User(String),
    /// A user signed in with one of their API tokens (`id`): the token's privileges narrow
    /// the user's.
    Token {
        user: String,
        id: String,
    },
    /// A user defined outside Berth (a directory), with the roles it mapped to at login.
    External {
        user: String,
        source: UserSource,
        roles: Vec<String>,
    },
}

/// Where a user is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserSource {
    /// `auth.users`, or added through the admin API or the UI.
    Local,
    Ldap,
    /// An OpenID Connect provider (a person) or a CI platform's issuer (a job).
    Oidc,
}

impl UserSource {
    pub fn as_str(self) -> &'static str {
        match self {
            UserSource::Local => "local",
            UserSource::Ldap => "ldap",
            UserSource::Oidc => "oidc",
        }
    }
}

impl Identity {
    pub fn name(&self) -> &str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::User(u)
            | Identity::Token { user: u, .. }
            | Identity::External { user: u, .. } => u,
        }
    }
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("invalid user name or password")]
    Invalid,
    #[error("too many failed logins; try again in {} s", .0.as_secs().max(1))]
    TooMany(Duration),
    #[error("too many logins are being verified at once; try again shortly")]
    Busy,
    /// The directory that holds the user could not be asked (not a wrong password).
    #[error("the user directory is unavailable; try again shortly ({0})")]
    Unavailable(String),
}

/// A privilege: actions on repositories whose names match a pattern (`*` matches anything).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privilege {
    #[serde(rename = "repositories")]
    pub pattern: String,
    pub actions: Vec<Action>,
}

/// `*` matches any run of characters; everything else literally.
pub fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Why access control could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error("argon2 cannot hash: {0}")]
    Argon2(String),
    #[error("auth.ldap: {0}")]
    Ldap(String),
    #[error("auth.oidc: {0}")]
    Oidc(String),
}

/// The access-control state of a core.
pub struct Auth {
    directory: std::sync::RwLock<Arc<Directory>>,
    anonymous_pull: std::sync::RwLock<HashSet<RepoName>>,
    /// The keys registry tokens are signed and checked with; replaced on a rotation.
    keys: std::sync::RwLock<Arc<KeyRing>>,
    key_source: KeySource,
    pub token_ttl: Duration,
    limiter: Limiter,
    /// Verified against when the user is unknown, so both failures cost the same.
    dummy_hash: Arc<str>,
    /// Bounds concurrent argon2 verifications (each ~tens of ms of CPU and 19 MiB of memory), so
    /// a login flood queues here instead of stalling pulls.
    verifying: tokio::sync::Semaphore,
    /// Recently verified Basic credentials (by SHA-256 of user and password), so a client that
    /// sends Basic on every request does not pay argon2 (tens of ms of CPU) every time.
    verified: Mutex<HashMap<[u8; 32], (Identity, Instant)>>,
    /// The LDAP directory, for users not defined here.
    ldap: Option<ldap::Ldap>,
    /// OpenID Connect: the UI's single sign-on, CI jobs' ID tokens.
    oidc: Option<oidc::Oidc>,
    /// When this core last recorded each API token's use (see [`Auth::note_token_use`]).
    token_seen: Mutex<HashMap<String, Instant>>,
    /// When this core last recorded each directory user's login, with which roles.
    directory_seen: Mutex<HashMap<String, (Vec<String>, Instant)>>,
    /// Where UI sessions and the signing key live (shared by every core on it).
    store: Arc<dyn MetadataStore>,
}

impl Auth {
    /// Builds from config over the metadata store (UI sessions, the signing key); an older
    /// release's token key may be waiting under `legacy_key_dir`.
    pub async fn open(
        config: &AuthConfig,
        anonymous_pull: HashSet<RepoName>,
        legacy_key_dir: &Path,
        store: Arc<dyn MetadataStore>,
    ) -> Result<Auth, OpenError> {
        let key_source = match &config.token_key_file {
            Some(path) => KeySource::File(path.clone()),
            None => KeySource::Store,
        };
        let ring = KeyRing::load(
            &key_source,
            legacy_key_dir,
            store.as_ref(),
            config.token_ttl,
        )
        .await?;
        tracing::info!(key = ring.kid(), "registry tokens signed with this key");
        let directory = Directory::new(&config.users, &config.roles, Vec::new());
        Ok(Auth {
            directory: std::sync::RwLock::new(Arc::new(directory)),
            anonymous_pull: std::sync::RwLock::new(anonymous_pull),
            keys: std::sync::RwLock::new(Arc::new(ring)),
            key_source,
            token_ttl: config.token_ttl,
            limiter: Limiter::new(config.limiter.clone()),
            dummy_hash: password::hash("berth: no such user")
                .map_err(OpenError::Argon2)?
                .into(),
            verifying: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            ),
            verified: Mutex::new(HashMap::new()),
            ldap: config
                .ldap
                .clone()
                .map(ldap::Ldap::new)
                .transpose()
                .map_err(OpenError::Ldap)?,
            oidc: config
                .oidc
                .clone()
                .map(oidc::Oidc::new)
                .transpose()
                .map_err(OpenError::Oidc)?,
            token_seen: Mutex::new(HashMap::new()),
            directory_seen: Mutex::new(HashMap::new()),
            store,
        })
    }

    fn dir(&self) -> Arc<Directory> {
        self.directory
            .read()
            .map_or_else(|p| p.into_inner().clone(), |d| d.clone())
    }

    /// Serves these users, roles and tokens from now on. Remembered logins of users whose
    /// password changed or who are gone are forgotten.
    pub fn replace_directory(
        &self,
        users: &[UserConfig],
        roles: &[RoleConfig],
        tokens: Vec<ApiToken>,
    ) {
        let fresh = Directory::new(users, roles, tokens);
        let old = std::mem::replace(
            &mut *self.directory.write().unwrap_or_else(|p| p.into_inner()),
            Arc::new(fresh),
        );
        let now = self.dir();
        let changed = old
            .users
            .iter()
            .any(|(name, u)| now.users.get(name).is_none_or(|n| n.hash != u.hash));
        if changed {
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
        }
    }

    /// The repositories unauthenticated clients may pull from, from now on.
    pub fn set_anonymous(&self, repos: HashSet<RepoName>) {
        *self
            .anonymous_pull
            .write()
            .unwrap_or_else(|p| p.into_inner()) = repos;
    }

    fn keys(&self) -> Arc<KeyRing> {
        self.keys
            .read()
            .map_or_else(|p| p.into_inner().clone(), |k| k.clone())
    }

    /// The fingerprint of the key registry tokens are signed with now.
    pub fn key_id(&self) -> String {
        self.keys().kid().to_owned()
    }

    /// Where the signing key comes from.
    pub fn key_source(&self) -> &KeySource {
        &self.key_source
    }

    /// Follows a rotation of the signing key made elsewhere (another core, `rotate-key`); the
    /// key signed with until now stays accepted for one token lifetime.
    pub async fn follow_keys(&self) -> Result<(), KeyError> {
        let old = self.keys();
        let Some(next) = old
            .follow(&self.key_source, self.store.as_ref(), self.token_ttl)
            .await?
        else {
            return Ok(());
        };
        tracing::info!(
            from = old.kid(),
            to = next.kid(),
            "registry token key rotated"
        );
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(next);
        Ok(())
    }

    /// Whether users from `source` are taken now (its section is in the config).
    fn source_configured(&self, source: UserSource) -> bool {
        match source {
            UserSource::Local => true,
            UserSource::Ldap => self.ldap.is_some(),
            UserSource::Oidc => self.oidc.is_some(),
        }
    }

    /// The UI's single sign-on, when `auth.oidc` names a provider for people.
    pub fn web_sign_on(&self) -> Option<&oidc::web::WebLogin> {
        self.oidc.as_ref().and_then(|o| o.web.as_ref())
    }

    fn anonymous_may_pull(&self, repo: &RepoName) -> bool {
        self.anonymous_pull
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(repo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// One hash for every `Auth` a test builds: a token carries the stamp of
    /// the hash it was issued under, and a fresh salt is a new password.
    fn alice_hash() -> &'static str {
        static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        HASH.get_or_init(|| password::hash("pw").unwrap())
    }

    async fn store() -> Arc<dyn MetadataStore> {
        use crate::storage::metadata::sql::{Backend, SqlMetadata};
        Arc::new(SqlMetadata::open(&Backend::Memory).await.unwrap())
    }

    async fn auth(dir: &Path, store: Arc<dyn MetadataStore>) -> Auth {
        let config = AuthConfig {
            users: vec![UserConfig {
                name: "alice".into(),
                password_hash: alice_hash().into(),
                roles: vec!["dev".into()],
            }],
            roles: vec![RoleConfig {
                name: "dev".into(),
                privileges: vec![Privilege {
                    pattern: "docker-*".into(),
                    actions: vec![Action::Read, Action::Write],
                }],
            }],
            token_ttl: Duration::from_secs(60),
            token_key_file: None,
            limiter: LimiterConfig {
                attempts: 2,
                ..LimiterConfig::default()
            },
            ldap: None,
            oidc: None,
        };
        Auth::open(
            &config,
            HashSet::from(["public".parse().unwrap()]),
            dir,
            store,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn logins_privileges_and_the_verified_cache() {
        let dir = tempfile::tempdir().unwrap();
        let shared = store().await;
        let a = auth(dir.path(), shared.clone()).await;
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let alice_ok = Ok(Identity::User("alice".into()));
        assert_eq!(a.login("alice", "pw", ip).await, alice_ok);
        // Served from the cache the second time; a wrong password never is.
        assert_eq!(a.login("alice", "pw", ip).await, alice_ok);
        assert_eq!(a.login("alice", "nope", ip).await, Err(LoginError::Invalid));
        assert_eq!(a.login("nobody", "pw", ip).await, Err(LoginError::Invalid));
        // Two failures from this address: the next guess waits, whatever the name...
        assert!(matches!(
            a.login("mallory", "guess", ip).await,
            Err(LoginError::TooMany(_))
        ));
        // ...but a password verified a moment ago is no guess and passes.
        assert_eq!(a.login("alice", "pw", ip).await, alice_ok);
        // Another address is not slowed by this one's failures.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(a.login("alice", "pw", other).await, alice_ok);
        let alice = Identity::User("alice".into());
        let repo = |n: &str| n.parse::<RepoName>().unwrap();
        assert!(a.can(&alice, &repo("docker-hosted"), Action::Write));
        assert!(!a.can(&alice, &repo("docker-hosted"), Action::Delete));
        assert!(!a.can(&alice, &repo("other"), Action::Read));
        assert!(a.can(&Identity::Anonymous, &repo("public"), Action::Read));
        assert!(!a.can(&Identity::Anonymous, &repo("public"), Action::Write));
        assert!(!a.is_admin(&alice));
        // The token key is the store's: a second core on the same store accepts the token.
        let t = a.issue(&alice, vec![]);
        assert_eq!(
            auth(dir.path(), shared)
                .await
                .bearer(&t)
                .map(|(who, _)| who),
            Some(alice.clone())
        );
        // A session is for the UI: not a bearer token, and a bearer token is not a session.
        let s = a.open_session(&alice).await.unwrap();
        assert_eq!(a.session_user(&s).await, Some(alice.clone()));
        assert!(a.bearer(&s).is_none());
        assert!(a.session_user(&t).await.is_none());
        a.close_session(&s).await.unwrap();
        assert!(a.session_user(&s).await.is_none(), "logged out");
    }

    #[test]
    fn globs() {
        assert!(glob("docker-*", "docker-hosted"));
        assert!(glob("*", "anything"));
        assert!(glob("*-hub", "docker-hub"));
        assert!(glob("a*c*e", "abcde"));
        assert!(!glob("docker-*", "other"));
        assert!(!glob("exact", "exactly"));
    }
}
