//! Users, roles and API tokens changed at run time, the same way as repositories
//! ([`super::control`]): the config file's `auth` section is the bootstrap, stored settings
//! add to it, override or remove its entries, and every change is validated as a whole
//! (a user's roles must exist; a role still given to a user cannot go) before it is stored
//! and served. Deleting a user revokes its tokens; changing or deleting a user ends its UI
//! sessions.

use serde_json::Value;

use super::control::{merge, ChangeError, Control, Origin};
use super::Registry;
use crate::auth::{ApiToken, RoleConfig, UserConfig};
use crate::storage::metadata::sessions::TokenUse;
use crate::storage::metadata::settings::SettingKind;

/// The shortest password accepted (NIST SP 800-63B's floor for user-chosen secrets).
pub const MIN_PASSWORD: usize = 8;

/// The argon2id hash of a new password, at least [`MIN_PASSWORD`] characters long, computed
/// off the async workers (tens of milliseconds of CPU).
pub async fn hash_new_password(password: &str) -> Result<String, ChangeError> {
    let invalid = |reason: String| ChangeError::Invalid {
        key: "password".into(),
        reason,
    };
    if password.chars().count() < MIN_PASSWORD {
        return Err(invalid(format!("at least {MIN_PASSWORD} characters")));
    }
    let plain = password.to_owned();
    tokio::task::spawn_blocking(move || crate::auth::password::hash(&plain))
        .await
        .map_err(|e| corrupt("password hash", e))?
        .map_err(invalid)
}

/// Users, roles and tokens as they are now, with origins.
pub struct DirectoryView {
    pub users: Vec<(UserConfig, Origin)>,
    pub roles: Vec<(RoleConfig, Origin)>,
    pub tokens: Vec<ApiToken>,
}

/// A change of a user or role: the new entry, or `None` to delete it.
pub struct EntryChange {
    pub kind: SettingKind,
    pub name: String,
    pub entry: Option<Value>,
    /// A create: the name must be new.
    pub create: bool,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> ChangeError {
    ChangeError::Store(crate::storage::metadata::MetadataError::Corrupt(format!(
        "stored {what}: {e}"
    )))
}

fn typed<T: serde::de::DeserializeOwned>(
    values: Vec<Value>,
    origins: Vec<Origin>,
    what: &str,
) -> Result<Vec<(T, Origin)>, ChangeError> {
    values
        .into_iter()
        .zip(origins)
        .map(|(v, o)| Ok((serde_json::from_value(v).map_err(|e| corrupt(what, e))?, o)))
        .collect()
}

impl Control {
    fn auth_bootstrap(&self) -> Result<&crate::auth::AuthConfig, ChangeError> {
        self.bootstrap.auth.as_ref().ok_or_else(|| {
            ChangeError::Conflict(
                "access control is off: the config file has no auth section, so there are \
                 no users to manage"
                    .into(),
            )
        })
    }

    /// The merged users, roles and tokens.
    pub async fn directory(&self) -> Result<DirectoryView, ChangeError> {
        let auth = self.auth_bootstrap()?;
        let meta = &self.stores.meta;
        let users: Vec<Value> = auth
            .users
            .iter()
            .filter_map(|u| serde_json::to_value(u).ok())
            .collect();
        let roles: Vec<Value> = auth
            .roles
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .collect();
        let u = merge(&users, &meta.settings(SettingKind::User).await?)?;
        let r = merge(&roles, &meta.settings(SettingKind::Role).await?)?;
        let tokens = meta
            .settings(SettingKind::Token)
            .await?
            .into_iter()
            .filter_map(|s| s.body)
            .map(|b| serde_json::from_str(&b).map_err(|e| corrupt("token", e)))
            .collect::<Result<Vec<ApiToken>, _>>()?;
        Ok(DirectoryView {
            users: typed(u.values, u.origins, "user")?,
            roles: typed(r.values, r.origins, "role")?,
            tokens,
        })
    }

    /// Serves the stored directory (start-up, and after a change here or on another core).
    pub async fn apply_directory(&self, reg: &Registry) -> Result<(), ChangeError> {
        let (Some(auth), Some(_)) = (&reg.auth, &self.bootstrap.auth) else {
            return Ok(());
        };
        let d = self.directory().await?;
        let users: Vec<UserConfig> = d.users.into_iter().map(|(u, _)| u).collect();
        let roles: Vec<RoleConfig> = d.roles.into_iter().map(|(r, _)| r).collect();
        auth.replace_directory(&users, &roles, d.tokens);
        Ok(())
    }

    /// Creates, replaces or deletes one user or role.
    pub async fn change_entry(
        &self,
        reg: &Registry,
        change: EntryChange,
        actor: &str,
    ) -> Result<(), ChangeError> {
        let _one = self.changing.lock().await;
        let mut d = self.directory().await?;
        let origin = Origin::Api {
            by: actor.to_owned(),
            at: crate::storage::metadata::now_ms(),
        };
        match change.kind {
            SettingKind::User => edit(&mut d.users, &change, origin, |u| &u.name)?,
            _ => edit(&mut d.roles, &change, origin, |r| &r.name)?,
        }
        check(&d)?;
        let meta = &self.stores.meta;
        let in_file = self.in_auth_file(change.kind, &change.name);
        match (&change.entry, in_file) {
            (Some(v), _) => {
                meta.put_setting(change.kind, &change.name, Some(&v.to_string()), actor)
                    .await?
            }
            (None, true) => {
                meta.put_setting(change.kind, &change.name, None, actor)
                    .await?
            }
            (None, false) => {
                meta.remove_setting(change.kind, &change.name).await?;
            }
        }
        if change.kind == SettingKind::User && change.entry.is_none() {
            for t in d.tokens.iter().filter(|t| t.user == change.name) {
                meta.remove_setting(SettingKind::Token, &t.id).await?;
            }
        }
        if change.kind == SettingKind::User {
            // A changed password or roles, or a deleted user: the UI sessions end, on every
            // core (they live in the store).
            let ended = meta.sessions_end(&change.name).await?;
            tracing::info!(user = %change.name, ended, "UI sessions ended");
        }
        self.note_version().await?;
        self.apply_directory(reg).await?;
        tracing::info!(target: "berth_core::audit", who = actor, kind = change.kind.as_str(),
            name = %change.name, action = if change.entry.is_some() { "set" } else { "delete" },
            "audit");
        Ok(())
    }

    fn in_auth_file(&self, kind: SettingKind, name: &str) -> bool {
        let Some(a) = &self.bootstrap.auth else {
            return false;
        };
        match kind {
            SettingKind::User => a.users.iter().any(|u| u.name == name),
            SettingKind::Role => a.roles.iter().any(|r| r.name == name),
            _ => false,
        }
    }

    /// Sets `user`'s password (hashed here, argon2id, off the async workers). Its UI sessions
    /// end on every core and registry tokens its old password obtained stop working (their
    /// password stamp no longer matches); API tokens stay, they are separate credentials.
    pub async fn set_password(
        &self,
        reg: &Registry,
        user: &str,
        password: &str,
        actor: &str,
    ) -> Result<(), ChangeError> {
        let hash = hash_new_password(password).await?;
        let mut current = self
            .directory()
            .await?
            .users
            .into_iter()
            .map(|(u, _)| u)
            .find(|u| u.name == user)
            .ok_or_else(|| ChangeError::NotFound {
                kind: "user",
                name: user.to_owned(),
            })?;
        current.password_hash = hash;
        let entry = serde_json::to_value(current).map_err(|e| corrupt("user", e))?;
        let change = EntryChange {
            kind: SettingKind::User,
            name: user.to_owned(),
            entry: Some(entry),
            create: false,
        };
        self.change_entry(reg, change, actor).await?;
        tracing::info!(target: "berth_core::audit", who = actor, user, action = "set password",
            "audit");
        Ok(())
    }

    /// When and from where each API token was last used (to the minute), by id.
    pub async fn token_uses(
        &self,
    ) -> Result<std::collections::HashMap<String, TokenUse>, ChangeError> {
        Ok(self.stores.meta.token_uses().await?)
    }

    /// Creates an API token for `user`, narrowed to `privileges` (empty: whatever the user may
    /// do, but the admin API), valid for `lifetime` (`None`: until revoked); the stored record
    /// and the token itself, to be shown once.
    pub async fn issue_token(
        &self,
        reg: &Registry,
        user: &str,
        name: &str,
        privileges: Vec<crate::auth::Privilege>,
        lifetime: Option<std::time::Duration>,
        actor: &str,
    ) -> Result<(ApiToken, String), ChangeError> {
        if name.trim().is_empty() {
            return Err(ChangeError::Invalid {
                key: "name".into(),
                reason: "missing".into(),
            });
        }
        let expires_at = lifetime.map(|d| {
            crate::storage::metadata::now() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)
        });
        let (token, secret) = ApiToken::generate(user, name.trim(), privileges, expires_at);
        self.add_token(reg, &token, actor).await?;
        Ok((token, secret))
    }

    /// Stores a new token (its user must exist) and serves it.
    pub async fn add_token(
        &self,
        reg: &Registry,
        token: &ApiToken,
        actor: &str,
    ) -> Result<(), ChangeError> {
        let _one = self.changing.lock().await;
        let d = self.directory().await?;
        if !d.users.iter().any(|(u, _)| u.name == token.user) {
            return Err(ChangeError::NotFound {
                kind: "user",
                name: token.user.clone(),
            });
        }
        let body = serde_json::to_string(token).map_err(|e| corrupt("token", e))?;
        self.stores
            .meta
            .put_setting(SettingKind::Token, &token.id, Some(&body), actor)
            .await?;
        self.note_version().await?;
        self.apply_directory(reg).await?;
        tracing::info!(target: "berth_core::audit", who = actor, user = %token.user,
            token = %token.id, name = %token.name, action = "create token", "audit");
        Ok(())
    }

    /// Revokes a token of `user`; `false` if there was none.
    pub async fn revoke_token(
        &self,
        reg: &Registry,
        user: &str,
        id: &str,
        actor: &str,
    ) -> Result<bool, ChangeError> {
        let _one = self.changing.lock().await;
        let d = self.directory().await?;
        if !d.tokens.iter().any(|t| t.id == id && t.user == user) {
            return Ok(false);
        }
        self.stores
            .meta
            .remove_setting(SettingKind::Token, id)
            .await?;
        self.stores.meta.token_use_forget(id).await?;
        self.note_version().await?;
        self.apply_directory(reg).await?;
        tracing::info!(target: "berth_core::audit", who = actor, user, token = id,
            action = "revoke token", "audit");
        Ok(true)
    }
}

/// Applies a change to a list of named entries.
fn edit<T: serde::de::DeserializeOwned>(
    list: &mut Vec<(T, Origin)>,
    change: &EntryChange,
    origin: Origin,
    name: impl Fn(&T) -> &String,
) -> Result<(), ChangeError> {
    let at = list.iter().position(|(e, _)| name(e) == &change.name);
    let parsed = change
        .entry
        .as_ref()
        .map(|v| {
            serde_json::from_value::<T>(v.clone()).map_err(|e| ChangeError::Invalid {
                key: change.kind.as_str().into(),
                reason: e.to_string(),
            })
        })
        .transpose()?;
    match (at, parsed, change.create) {
        (Some(_), _, true) => Err(ChangeError::Conflict(format!(
            "a {} named {} already exists",
            change.kind.as_str(),
            change.name
        ))),
        (None, _, false) => Err(ChangeError::NotFound {
            kind: change.kind.as_str(),
            name: change.name.clone(),
        }),
        (Some(i), None, _) => {
            list.remove(i);
            Ok(())
        }
        (Some(i), Some(e), _) => {
            list[i] = (e, origin);
            Ok(())
        }
        (None, Some(e), true) => {
            list.push((e, origin));
            Ok(())
        }
        (None, None, true) => Err(ChangeError::NotFound {
            kind: change.kind.as_str(),
            name: change.name.clone(),
        }),
    }
}

/// What must hold across the directory: every user's roles exist, hashes are argon2.
fn check(d: &DirectoryView) -> Result<(), ChangeError> {
    for (u, _) in &d.users {
        crate::auth::password::validate(&u.password_hash).map_err(|reason| {
            ChangeError::Invalid {
                key: format!("user {}: password_hash", u.name),
                reason,
            }
        })?;
        if let Some(r) = u
            .roles
            .iter()
            .find(|r| !d.roles.iter().any(|(x, _)| &x.name == *r))
        {
            return Err(ChangeError::Conflict(format!(
                "user {} has role {r}, which does not exist",
                u.name
            )));
        }
    }
    Ok(())
}
