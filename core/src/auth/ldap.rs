//! Logins checked against an LDAP directory (`auth.ldap`), through the `ldap3` crate.
//!
//! The usual three steps, each on the wire and none done by hand: bind as the service account
//! and search the user by the configured filter (the login name escaped per RFC 4515, so a
//! name like `*)(uid=*` matches nothing); bind *as that user* with the given password on a
//! connection of its own, so the directory alone judges the password (no hash ever leaves it,
//! and we never compare one); then search the user's groups and map them to roles. Groups are
//! read at every login, so a user taken out of a group loses its roles with the next token.
//!
//! A directory that cannot be reached (refused, TLS failure, a service bind refused, or no
//! answer within `timeout`) is [`LdapError::Unavailable`], never a wrong password: the realm
//! answers 503 and nobody is counted as guessing. Neither password is ever logged; errors from
//! the crate are reported by their kind, since they could echo what was sent.

use std::sync::Arc;

use ldap3::{ldap_escape, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio_rustls::rustls;

use super::{LdapConfig, Secret};

/// The LDAP result code for a wrong password (or a DN that does not exist).
const INVALID_CREDENTIALS: u32 = 49;

/// Why a directory login could not be decided.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdapError {
    #[error("the LDAP directory is unavailable: {0}")]
    Unavailable(String),
}

/// A directory user whose password the directory accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LdapUser {
    pub dn: String,
    /// Berth roles from the user's groups, through `group_roles`.
    pub roles: Vec<String>,
}

/// A configured directory.
pub struct Ldap {
    config: LdapConfig,
    /// `Some` with `ca_file`; otherwise the crate's default (the system's roots).
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// The certificates of a PEM file, for the directory's TLS.
pub fn read_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no PEM certificate in it", path.display()));
    }
    Ok(roots)
}

impl Ldap {
    pub fn new(config: LdapConfig) -> Result<Ldap, String> {
        if config.url.starts_with("ldap://") && !config.start_tls {
            // Allowed (a directory on the same host or a private link), never quietly.
            tracing::warn!(
                url = %config.url,
                "auth.ldap: ldap:// without start_tls sends every directory password in the \
                 clear; use ldaps:// or start_tls: true"
            );
        }
        let tls = match &config.ca_file {
            None => None,
            Some(path) => {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(read_roots(path)?)
                    .with_no_client_auth();
                Some(Arc::new(tls))
            }
        };
        Ok(Ldap { config, tls })
    }

    /// The user `name` if the directory accepts `password` for it; `Ok(None)` for an unknown
    /// user or a wrong password.
    pub async fn authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<LdapUser>, LdapError> {
        // An empty password is an "unauthenticated bind" (RFC 4513 5.1.2): many servers
        // answer it with success, so it must never reach the directory.
        if password.is_empty() {
            return Ok(None);
        }
        tokio::time::timeout(self.config.timeout, self.try_authenticate(name, password))
            .await
            .map_err(|_| {
                LdapError::Unavailable(format!(
                    "no answer within {} s",
                    self.config.timeout.as_secs_f32()
                ))
            })?
    }

    async fn try_authenticate(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<LdapUser>, LdapError> {
        let mut service = self.connect().await?;
        if let (Some(dn), Some(file)) = (&self.config.bind_dn, &self.config.bind_password_file) {
            let pw = Secret::read(file).map_err(|e| {
                LdapError::Unavailable(format!("cannot read {}: {}", file.display(), e.kind()))
            })?;
            let result = service.simple_bind(dn, &pw.0).await.map_err(down)?;
            if result.rc != 0 {
                // Our own account refused: an operator's problem, never the user's password.
                return Err(LdapError::Unavailable(format!(
                    "the service bind as {dn} was refused (result code {})",
                    result.rc
                )));
            }
        }
        let Some(dn) = self.find_user(&mut service, name).await? else {
            return Ok(None);
        };
        if !self.password_ok(&dn, password).await? {
            return Ok(None);
        }
        let roles = self.roles(&mut service, name, &dn).await?;
        let _ = service.unbind().await;
        Ok(Some(LdapUser { dn, roles }))
    }

    /// A connection, TLS set up as configured, driven in the background until dropped.
    async fn connect(&self) -> Result<ldap3::Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.config.timeout)
            .set_starttls(self.config.start_tls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(tls.clone());
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.config.url)
            .await
            .map_err(down)?;
        ldap3::drive!(conn);
        Ok(ldap)
    }

    /// The DN of the one entry the user filter finds for `name`.
    async fn find_user(
        &self,
        ldap: &mut ldap3::Ldap,
        name: &str,
    ) -> Result<Option<String>, LdapError> {
        let filter = self
            .config
            .user_filter
            .replace("{user}", &ldap_escape(name));
        let found = search(ldap, &self.config.user_base, &filter).await?;
        match found.as_slice() {
            [dn] => Ok(Some(dn.clone())),
            [] => Ok(None),
            more => {
                tracing::warn!(
                    user = name,
                    entries = more.len(),
                    "the LDAP user filter finds several entries for this name; refused"
                );
                Ok(None)
            }
        }
    }

    /// Whether the directory takes `password` for `dn`: a bind as the user, on a connection
    /// of its own so the service account's searches are not made as the user.
    async fn password_ok(&self, dn: &str, password: &str) -> Result<bool, LdapError> {
        let mut user = self.connect().await?;
        let result = user.simple_bind(dn, password).await.map_err(down)?;
        let _ = user.unbind().await;
        match result.rc {
            0 => Ok(true),
            INVALID_CREDENTIALS => Ok(false),
            rc => Err(LdapError::Unavailable(format!(
                "the user bind failed with result code {rc}"
            ))),
        }
    }

    /// The roles of the groups the user is in.
    async fn roles(
        &self,
        ldap: &mut ldap3::Ldap,
        name: &str,
        dn: &str,
    ) -> Result<Vec<String>, LdapError> {
        let Some(base) = &self.config.group_base else {
            return Ok(Vec::new());
        };
        let filter = self
            .config
            .group_filter
            .replace("{dn}", &ldap_escape(dn))
            .replace("{user}", &ldap_escape(name));
        let groups = search(ldap, base, &filter).await?;
        Ok(roles_of(&self.config.group_roles, &groups))
    }
}

/// The DNs a subtree search finds (no attributes asked for).
async fn search(
    ldap: &mut ldap3::Ldap,
    base: &str,
    filter: &str,
) -> Result<Vec<String>, LdapError> {
    let result = ldap
        .search(base, Scope::Subtree, filter, vec!["1.1"])
        .await
        .map_err(down)?;
    let (entries, outcome) = (result.0, result.1);
    if outcome.rc != 0 {
        return Err(LdapError::Unavailable(format!(
            "a search under {base} failed with result code {}",
            outcome.rc
        )));
    }
    Ok(entries
        .into_iter()
        .map(|e| SearchEntry::construct(e).dn)
        .collect())
}

/// Roles of `groups` by `group_roles`, DNs compared as the directory would (case and the
/// spaces around separators do not matter), each role once.
fn roles_of(group_roles: &[(String, Vec<String>)], groups: &[String]) -> Vec<String> {
    let groups: Vec<String> = groups.iter().map(|g| normal_dn(g)).collect();
    let mut roles: Vec<String> = group_roles
        .iter()
        .filter(|(dn, _)| groups.contains(&normal_dn(dn)))
        .flat_map(|(_, roles)| roles.iter().cloned())
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

fn normal_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

/// The crate's error, by kind only: its text can carry what was sent.
fn down(e: ldap3::LdapError) -> LdapError {
    let kind = match &e {
        ldap3::LdapError::Io { source } => format!("I/O: {}", source.kind()),
        ldap3::LdapError::Timeout { .. } => "timed out".into(),
        ldap3::LdapError::UrlParsing { .. } | ldap3::LdapError::UnknownScheme(_) => {
            "bad URL".into()
        }
        ldap3::LdapError::Rustls { source } => format!("TLS: {source}"),
        other => other.to_string().chars().take(120).collect(),
    };
    LdapError::Unavailable(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_roles_whatever_the_case_and_spacing() {
        let map = vec![
            (
                "cn=devs,ou=groups,dc=example,dc=com".to_owned(),
                vec!["dev".to_owned()],
            ),
            (
                "cn=ops,ou=groups,dc=example,dc=com".to_owned(),
                vec!["dev".to_owned(), "ops".to_owned()],
            ),
        ];
        let groups = vec![
            "CN=Devs, ou=Groups,dc=example,dc=com".to_owned(),
            "cn=ops,ou=groups,dc=example,dc=com".to_owned(),
        ];
        assert_eq!(roles_of(&map, &groups), vec!["dev", "ops"]);
        assert!(roles_of(&map, &["cn=other,dc=example,dc=com".to_owned()]).is_empty());
    }
}
