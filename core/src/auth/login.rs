//! Logins: a user name with a password or an API token, from a client address.
//!
//! Local users come first and win on a name clash, so the admin account works whatever the
//! directory does; a name that is not local goes to the LDAP directory when one is
//! configured. Every guess goes through the same back-off (counted before the check, refunded
//! when it passes), local or directory. A password verified in the last minute passes from a
//! per-core cache (bounded, see [`VERIFIED_TTL`]), so a client that sends Basic on every
//! request pays neither argon2 nor a directory round trip each time; a directory user's roles
//! are cached with it, so a group change reaches such a client within that minute and a
//! registry token at its next issue.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::ldap::LdapError;
use super::oidc::{self, OidcError};
use super::{parse_token, password, token, Auth, Identity, LoginError, UserSource};

/// How long a verified Basic credential is trusted without argon2 or the directory.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Bound on remembered credentials; the cache is cleared when it is exceeded.
pub(super) const VERIFIED_MAX: usize = 10_000;
/// How long a login may wait for a verification slot before it is told to retry.
const VERIFY_QUEUE_WAIT: Duration = Duration::from_secs(10);

fn credential_key(user: &str, pass: &str) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(user.as_bytes());
    h.update([0u8]);
    h.update(pass.as_bytes());
    h.finalize().into()
}

impl Auth {
    /// Checks a user name and password from `client`. A password verified in the last minute
    /// passes without argon2 (and without the back-off: it is not a guess); otherwise the
    /// back-off is consulted, and argon2 runs on a blocking thread behind `verifying`.
    pub async fn login(
        &self,
        user: &str,
        pass: &str,
        client: IpAddr,
    ) -> Result<Identity, LoginError> {
        self.login_with(user, pass, client, false).await
    }

    /// [`Auth::login`] for the token realm: a directory user is always asked of the directory,
    /// so a token carries the groups of this moment (a local password may still pass from the
    /// cache: its roles are read from the directory in force either way).
    pub async fn login_fresh(
        &self,
        user: &str,
        pass: &str,
        client: IpAddr,
    ) -> Result<Identity, LoginError> {
        self.login_with(user, pass, client, true).await
    }

    async fn login_with(
        &self,
        user: &str,
        pass: &str,
        client: IpAddr,
        fresh: bool,
    ) -> Result<Identity, LoginError> {
        if let Some((id, secret)) = parse_token(pass) {
            return self.token_login(user, id, secret, client);
        }
        if self.oidc.as_ref().is_some_and(|o| o.takes_workloads()) && oidc::looks_like_jwt(pass) {
            return self.workload_login(user, pass, client).await;
        }
        let cred = credential_key(user, pass);
        let cached = self.recently_verified(&cred, user);
        if let Some(who) = cached.filter(|w| !fresh || matches!(w, Identity::User(_))) {
            return Ok(who);
        }
        // Counted as a failure before the check runs, refunded if it succeeds: a burst cannot
        // outrun the back-off.
        let attempt = self
            .limiter
            .reserve(client, user)
            .map_err(LoginError::TooMany)?;
        let known = self.dir().users.get(user).map(|u| u.hash.clone());
        let checked = match (&known, &self.ldap) {
            (None, Some(_)) => self.directory_login(user, pass, client).await,
            _ => self.local_login(user, pass, known.clone()).await,
        };
        match checked {
            Ok(Some(who)) => {
                self.limiter.refund(attempt);
                self.remember(cred, &who);
                Ok(who)
            }
            Ok(None) => {
                crate::metrics::global().failed_logins.inc();
                tracing::warn!(user, %client, "failed login");
                Err(LoginError::Invalid)
            }
            Err(e) => {
                // Never decided: not a guess.
                self.limiter.refund(attempt);
                Err(e)
            }
        }
    }

    /// A local password: argon2 against the user's hash, or against the dummy hash for an
    /// unknown user, so both failures cost the same.
    async fn local_login(
        &self,
        user: &str,
        pass: &str,
        known: Option<Arc<str>>,
    ) -> Result<Option<Identity>, LoginError> {
        let hash = known.clone().unwrap_or_else(|| self.dummy_hash.clone());
        let verified = self.verify_password(pass, hash).await?;
        Ok((verified && known.is_some()).then(|| Identity::User(user.to_owned())))
    }

    /// A directory password, with the roles of the user's groups.
    async fn directory_login(
        &self,
        user: &str,
        pass: &str,
        client: IpAddr,
    ) -> Result<Option<Identity>, LoginError> {
        let Some(ldap) = &self.ldap else {
            return Ok(None);
        };
        match ldap.authenticate(user, pass).await {
            Ok(found) => Ok(found.map(|u| {
                tracing::debug!(user, dn = %u.dn, roles = ?u.roles, "directory login");
                self.note_directory_login(user, UserSource::Ldap, &u.roles, client);
                Identity::External {
                    user: user.to_owned(),
                    source: UserSource::Ldap,
                    roles: u.roles,
                }
            })),
            Err(LdapError::Unavailable(why)) => {
                tracing::warn!(user, reason = %why, "LDAP directory unavailable for a login");
                crate::metrics::global().directory_failures.inc();
                Err(LoginError::Unavailable(why))
            }
        }
    }

    /// A CI job's ID token given as the password: its issuer's signature and the workload
    /// rules decide (the user name it came with is not used: the job is the token's `sub`).
    /// Not cached: the check is cheap and the token's expiry must always hold.
    async fn workload_login(
        &self,
        user: &str,
        jwt: &str,
        client: IpAddr,
    ) -> Result<Identity, LoginError> {
        let Some(oidc) = &self.oidc else {
            return Err(LoginError::Invalid);
        };
        let attempt = self
            .limiter
            .reserve(client, user)
            .map_err(LoginError::TooMany)?;
        match oidc.workload(jwt).await {
            Ok(w) => {
                self.limiter.refund(attempt);
                tracing::debug!(job = %w.name, roles = ?w.roles, "workload login");
                self.note_directory_login(&w.name, UserSource::Oidc, &w.roles, client);
                Ok(Identity::External {
                    user: w.name,
                    source: UserSource::Oidc,
                    roles: w.roles,
                })
            }
            Err(OidcError::Refused(why)) => {
                crate::metrics::global().failed_logins.inc();
                tracing::warn!(user, %client, reason = %why, "failed workload login");
                Err(LoginError::Invalid)
            }
            Err(OidcError::Unavailable(why)) => {
                self.limiter.refund(attempt);
                tracing::warn!(reason = %why, "OIDC issuer unavailable for a workload login");
                crate::metrics::global().directory_failures.inc();
                Err(LoginError::Unavailable(why))
            }
        }
    }

    /// A person back from the UI's single sign-on: the identity their groups give, recorded
    /// like a directory login.
    pub fn sign_on_identity(&self, person: oidc::web::Person, client: IpAddr) -> Option<Identity> {
        if self.dir().users.contains_key(&person.name) {
            // A local user of that name: the name is theirs, and only their password opens it.
            tracing::warn!(user = %person.name, "single sign-on refused: a local user has the name");
            return None;
        }
        self.note_directory_login(&person.name, UserSource::Oidc, &person.roles, client);
        Some(Identity::External {
            user: person.name,
            source: UserSource::Oidc,
            roles: person.roles,
        })
    }

    /// An API token given as the password: checked by its digest, no argon2.
    fn token_login(
        &self,
        user: &str,
        id: &str,
        secret: &str,
        client: IpAddr,
    ) -> Result<Identity, LoginError> {
        let attempt = self
            .limiter
            .reserve(client, user)
            .map_err(LoginError::TooMany)?;
        let dir = self.dir();
        match dir.token_user(id, secret, token::now() as i64) {
            Some(t) if t.user == user => {
                self.limiter.refund(attempt);
                self.note_token_use(id, client);
                Ok(Identity::Token {
                    user: user.to_owned(),
                    id: id.to_owned(),
                })
            }
            _ => {
                crate::metrics::global().failed_logins.inc();
                tracing::warn!(user, %client, token = id, "failed token login");
                Err(LoginError::Invalid)
            }
        }
    }

    fn remember(&self, cred: [u8; 32], who: &Identity) {
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERIFIED_MAX {
            cache.clear();
        }
        cache.insert(cred, (who.clone(), Instant::now()));
    }

    /// The identity a credential was verified as in the last minute, if it still stands: a
    /// local user still there, a directory user still not shadowed by a local one.
    fn recently_verified(&self, cred: &[u8; 32], user: &str) -> Option<Identity> {
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        let (who, at) = cache.get(cred)?;
        let local = self.dir().users.contains_key(user);
        let stands = match who {
            Identity::User(_) => local,
            Identity::External { .. } => !local,
            _ => false,
        };
        (at.elapsed() < VERIFIED_TTL && who.name() == user && stands).then(|| who.clone())
    }

    /// argon2 off the async workers, at most `verifying` at once. An unknown user is checked
    /// against the dummy hash (the same cost), so the caller cannot tell the two apart.
    async fn verify_password(&self, pass: &str, hash: Arc<str>) -> Result<bool, LoginError> {
        let _permit = tokio::time::timeout(VERIFY_QUEUE_WAIT, self.verifying.acquire())
            .await
            .map_err(|_| LoginError::Busy)?
            .map_err(|_| LoginError::Busy)?;
        let pass = pass.to_owned();
        tokio::task::spawn_blocking(move || password::verify(&pass, &hash))
            .await
            .map_err(|_| LoginError::Busy)
    }
}
