//! Changes at run time: repositories created, changed and deleted through the admin API (and
//! the UI), with their connector ports opened and closed live, no restart.
//!
//! The config file stays the bootstrap. A change is stored in the metadata store as a
//! setting in the file's own shape ([`crate::storage::metadata::settings`]), so it survives a
//! restart and every core on one database applies it ([`Control::refresh`]). Every change
//! goes the same way, one at a time:
//! 1. merge the file's entries with the stored settings, apply the change to the list;
//! 2. validate the whole list with the config file's own checks (`400` naming the key; a
//!    port another repository holds, or a group still listing a deleted member, is `409`);
//! 3. bind the new ports before anything else changes (a port in use is `409`, and names it);
//! 4. store the setting, then serve the new list.
//!
//! Each merged entry keeps its origin — the file, the API, or the API overriding the file —
//! which `GET` shows.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use super::ports::{Listen, PortError, Ports};
use super::wiring::{self, BuildError};
use super::Registry;
use crate::config::{Config, EntryError, RepoConfig};
use crate::oci::RepoName;
use crate::storage::metadata::settings::{Setting, SettingKind};
use crate::storage::metadata::{Actor, MetadataError};
use crate::storage::Stores;

/// Where a repository's settings come from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Origin {
    /// The config file, unchanged.
    Config,
    /// Created at run time.
    Api { by: String, at: i64 },
    /// An entry of the config file changed at run time: the stored one applies.
    ApiOverridesConfig { by: String, at: i64 },
}

/// What a change asks for.
#[derive(Debug, Clone)]
pub enum RepoChange {
    Create(Value),
    Replace(String, Value),
    Delete(String),
}

/// Why a change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{0}")]
    Conflict(String),
    #[error("no {kind} named {name:?}")]
    NotFound { kind: &'static str, name: String },
    #[error(transparent)]
    Store(#[from] MetadataError),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Ports(String),
}

/// The merged list: entries in order, with their origins.
#[derive(Debug, Clone, Default)]
pub(super) struct Merged {
    pub values: Vec<Value>,
    pub origins: Vec<Origin>,
}

impl Merged {
    fn index(&self, name: &str) -> Option<usize> {
        self.values.iter().position(|v| entry_name(v) == Some(name))
    }
}

fn entry_name(v: &Value) -> Option<&str> {
    v.get("name").and_then(Value::as_str)
}

/// The file's entries, each overridden or removed by a stored setting of its name, then the
/// entries created at run time, oldest first.
pub(super) fn merge(file: &[Value], rows: &[Setting]) -> Result<Merged, MetadataError> {
    let by_name: BTreeMap<&str, &Setting> = rows.iter().map(|r| (r.name.as_str(), r)).collect();
    let parse = |r: &Setting, body: &str| {
        serde_json::from_str::<Value>(body).map_err(|e| {
            MetadataError::Corrupt(format!("stored settings of repository {}: {e}", r.name))
        })
    };
    let mut m = Merged::default();
    for v in file {
        match entry_name(v).and_then(|n| by_name.get(n)) {
            None => {
                m.values.push(v.clone());
                m.origins.push(Origin::Config);
            }
            Some(Setting { body: None, .. }) => {}
            Some(r @ Setting { body: Some(b), .. }) => {
                m.values.push(parse(r, b)?);
                m.origins.push(Origin::ApiOverridesConfig {
                    by: r.actor.clone(),
                    at: r.updated_at,
                });
            }
        }
    }
    let in_file = |n: &str| file.iter().any(|v| entry_name(v) == Some(n));
    let mut created: Vec<&Setting> = rows.iter().filter(|r| !in_file(&r.name)).collect();
    created.sort_by_key(|r| (r.updated_at, r.name.clone()));
    for r in created {
        if let Some(b) = &r.body {
            m.values.push(parse(r, b)?);
            m.origins.push(Origin::Api {
                by: r.actor.clone(),
                at: r.updated_at,
            });
        }
    }
    Ok(m)
}

/// Run-time changes of a core.
pub struct Control {
    pub(super) stores: Stores,
    pub(super) bootstrap: Config,
    /// One change at a time in this core.
    pub(super) changing: tokio::sync::Mutex<()>,
    ports: OnceLock<Arc<dyn Ports>>,
    origins: std::sync::RwLock<BTreeMap<RepoName, Origin>>,
    /// The settings version last applied.
    version: AtomicI64,
}

impl Control {
    /// Merges the config file with the stored settings: the config to start with (its
    /// `repositories` the merged list) and the control that changes it from then on.
    pub async fn start(config: Config, stores: Stores) -> Result<(Config, Control), ChangeError> {
        let version = stores.meta.settings_version().await?;
        let rows = stores.meta.settings(SettingKind::Repository).await?;
        let merged = merge(&config.repository_entries, &rows)?;
        let repos = validate(&config, &merged).map_err(|e| match e {
            ChangeError::Invalid { key, reason } => ChangeError::Invalid {
                key: format!("{key} (with the settings changed at run time)"),
                reason,
            },
            other => other,
        })?;
        let control = Control {
            stores,
            bootstrap: config.clone(),
            changing: tokio::sync::Mutex::new(()),
            ports: OnceLock::new(),
            origins: std::sync::RwLock::new(origins(&repos, &merged)),
            version: AtomicI64::new(version),
        };
        let replication = control.replication_rules(&repos).await?;
        Ok((
            Config {
                repositories: repos,
                replication,
                ..config
            },
            control,
        ))
    }

    /// Hands over the connector sockets once they are served.
    pub fn attach(&self, ports: Arc<dyn Ports>) {
        let _ = self.ports.set(ports);
    }

    /// Where a repository's settings come from.
    pub fn origin(&self, name: &RepoName) -> Origin {
        let o = self.origins.read().unwrap_or_else(|p| p.into_inner());
        o.get(name).cloned().unwrap_or(Origin::Config)
    }

    /// The addresses each repository listens on now: `(address, direct HTTPS)`.
    pub async fn listening(&self) -> BTreeMap<RepoName, Vec<(std::net::SocketAddr, bool)>> {
        match self.ports.get() {
            Some(p) => p.listening().await,
            None => BTreeMap::new(),
        }
    }

    /// Every certificate the direct-HTTPS connectors serve now, as their resolvers hold it
    /// (the last reload's result included); the edge's inventory has the same shape.
    pub async fn certificates(&self) -> Vec<berth_certs::CertEntry> {
        match self.ports.get() {
            Some(p) => p.certificates().await,
            None => Vec::new(),
        }
    }

    /// Applies one change; returns the repository's name.
    pub async fn change(
        &self,
        reg: &Registry,
        change: RepoChange,
        actor: &str,
    ) -> Result<RepoName, ChangeError> {
        let _one = self.changing.lock().await;
        let rows = self.stores.meta.settings(SettingKind::Repository).await?;
        let mut merged = merge(&self.bootstrap.repository_entries, &rows)?;
        let (name, value) = apply(
            &mut merged,
            &change,
            actor,
            &self.bootstrap.repository_entries,
        )?;
        let repos = validate(&self.bootstrap, &merged).map_err(|e| match (&change, e) {
            (RepoChange::Delete(_), ChangeError::Invalid { key, reason }) => {
                ChangeError::Conflict(format!("{name} cannot be deleted: {key}: {reason}"))
            }
            (_, e) => e,
        })?;
        let repo: RepoName = name.parse().map_err(|e| ChangeError::Invalid {
            key: "name".into(),
            reason: format!("{e}"),
        })?;
        let wanted = repos
            .iter()
            .find(|r| r.name == repo)
            .map(|r| Listen::of(r.connector.as_ref()))
            .unwrap_or_default();
        let before = reg
            .repos()
            .get(&repo)
            .map(|e| Listen::of(e.config.connector.as_ref()))
            .unwrap_or_default();
        self.sync(&repo, &wanted).await?;
        if let Err(e) = self.store(&repo, value.as_ref(), &change, actor).await {
            // Put the ports back as they were; the change did not happen.
            let _ = self.sync(&repo, &before).await;
            return Err(e);
        }
        self.install(reg, repos, &merged)?;
        tracing::info!(target: "berth_core::audit", who = actor, repository = %repo,
            action = change.verb(), "audit");
        Ok(repo)
    }

    async fn sync(&self, repo: &RepoName, wanted: &[Listen]) -> Result<(), ChangeError> {
        let Some(p) = self.ports.get() else {
            return Ok(());
        };
        p.sync(repo, wanted).await.map_err(|e| match e {
            busy @ PortError::Busy { .. } => ChangeError::Conflict(busy.to_string()),
            PortError::Other(m) => ChangeError::Ports(m),
        })
    }

    /// Stores the change. Deleting a file entry stores a tombstone; deleting a repository
    /// sends its content to the trash (the collector frees it after the undo window).
    async fn store(
        &self,
        repo: &RepoName,
        value: Option<&Value>,
        change: &RepoChange,
        actor: &str,
    ) -> Result<(), ChangeError> {
        let meta = &self.stores.meta;
        let kind = SettingKind::Repository;
        match (change, value) {
            (RepoChange::Delete(_), _) => {
                let in_file = self
                    .bootstrap
                    .repository_entries
                    .iter()
                    .any(|v| entry_name(v) == Some(repo.as_str()));
                if in_file {
                    meta.put_setting(kind, repo.as_str(), None, actor).await?;
                } else {
                    meta.remove_setting(kind, repo.as_str()).await?;
                }
                let trashed = meta
                    .retire_repository(repo, Actor::new(actor, "repository deleted"))
                    .await?;
                tracing::info!(repository = %repo, manifests = trashed, "repository deleted; its content is in the trash");
            }
            (_, Some(v)) => {
                meta.put_setting(kind, repo.as_str(), Some(&v.to_string()), actor)
                    .await?;
            }
            (_, None) => {}
        }
        self.note_version().await
    }

    /// Remembers the settings version this core has applied.
    pub(super) async fn note_version(&self) -> Result<(), ChangeError> {
        let v = self.stores.meta.settings_version().await?;
        self.version.store(v, Ordering::SeqCst);
        Ok(())
    }

    /// Serves `repos` from now on.
    fn install(
        &self,
        reg: &Registry,
        repos: Vec<RepoConfig>,
        merged: &Merged,
    ) -> Result<(), ChangeError> {
        let map = wiring::entries(&repos, &self.stores, &self.bootstrap.limits, &reg.repos())?;
        reg.install(map);
        reg.lifecycle.replace(wiring::lifecycles(&repos));
        if let Some(auth) = &reg.auth {
            auth.set_anonymous(wiring::anonymous(&repos));
        }
        *self.origins.write().unwrap_or_else(|p| p.into_inner()) = origins(&repos, merged);
        Ok(())
    }

    /// Applies settings another core stored, if the version moved. A port this core cannot
    /// open (another process holds it here) is logged and tried again on the next change; the
    /// rest of the change applies (the repository is still served on the main port).
    pub async fn refresh(&self, reg: &Registry) -> Result<(), ChangeError> {
        let _one = self.changing.lock().await;
        let version = self.stores.meta.settings_version().await?;
        if version == self.version.load(Ordering::SeqCst) {
            return Ok(());
        }
        let rows = self.stores.meta.settings(SettingKind::Repository).await?;
        let merged = merge(&self.bootstrap.repository_entries, &rows)?;
        let repos = validate(&self.bootstrap, &merged)?;
        let current = reg.repos();
        let gone: Vec<RepoName> = current
            .keys()
            .filter(|n| !repos.iter().any(|r| &r.name == *n))
            .cloned()
            .collect();
        let wanted = repos
            .iter()
            .map(|r| (r.name.clone(), Listen::of(r.connector.as_ref())))
            .chain(gone.into_iter().map(|n| (n, Vec::new())));
        for (name, listens) in wanted {
            if let Err(e) = self.sync(&name, &listens).await {
                tracing::error!(repository = %name, error = %e,
                    "cannot open the ports another core configured");
            }
        }
        self.install(reg, repos.clone(), &merged)?;
        self.apply_directory(reg).await?;
        reg.replication
            .replace_rules(self.replication_rules(&repos).await?);
        if let Some(auth) = &reg.auth {
            // A key that cannot be followed (a key file not yet replaced here) is logged; the
            // old key keeps signing, and the other cores accept it as their previous one.
            if let Err(e) = auth.follow_keys().await {
                tracing::error!(error = %e, "cannot follow the rotated registry token key");
            }
        }
        self.version.store(version, Ordering::SeqCst);
        tracing::info!(version, "applied settings changed by another core");
        Ok(())
    }
}

impl RepoChange {
    fn verb(&self) -> &'static str {
        match self {
            RepoChange::Create(_) => "create repository",
            RepoChange::Replace(..) => "update repository",
            RepoChange::Delete(_) => "delete repository",
        }
    }
}

/// Applies a change to the merged list: the name it is about and the entry to store.
fn apply(
    m: &mut Merged,
    change: &RepoChange,
    actor: &str,
    file: &[Value],
) -> Result<(String, Option<Value>), ChangeError> {
    let (by, at) = (actor.to_owned(), crate::storage::metadata::now_ms());
    let origin = Origin::Api { by: by.clone(), at };
    match change {
        RepoChange::Create(v) => {
            let name = body_name(v, None)?;
            if m.index(&name).is_some() {
                return Err(ChangeError::Conflict(format!(
                    "a repository named {name} already exists"
                )));
            }
            m.values.push(v.clone());
            m.origins.push(origin);
            Ok((name, Some(v.clone())))
        }
        RepoChange::Replace(name, v) => {
            let i = m.index(name).ok_or_else(|| ChangeError::NotFound {
                kind: "repository",
                name: name.clone(),
            })?;
            let mut v = v.clone();
            body_name(&v, Some(name))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("name".into(), Value::String(name.clone()));
            }
            m.values[i] = v.clone();
            m.origins[i] = if file.iter().any(|f| entry_name(f) == Some(name)) {
                Origin::ApiOverridesConfig { by, at }
            } else {
                origin
            };
            Ok((name.clone(), Some(v)))
        }
        RepoChange::Delete(name) => {
            let i = m.index(name).ok_or_else(|| ChangeError::NotFound {
                kind: "repository",
                name: name.clone(),
            })?;
            m.values.remove(i);
            m.origins.remove(i);
            Ok((name.clone(), None))
        }
    }
}

/// The `name` of a body; on a replace it may be left out, but not differ from the path's.
fn body_name(v: &Value, path: Option<&str>) -> Result<String, ChangeError> {
    let invalid = |reason: String| ChangeError::Invalid {
        key: "name".into(),
        reason,
    };
    if !v.is_object() {
        return Err(ChangeError::Invalid {
            key: "(body)".into(),
            reason: "must be a JSON object: one entry of `repositories:`".into(),
        });
    }
    match (entry_name(v), path) {
        (Some(n), Some(p)) if n != p => Err(invalid(format!(
            "{n:?} differs from the repository in the URL ({p}); renaming is not supported"
        ))),
        (Some(n), _) => Ok(n.to_owned()),
        (None, Some(p)) => Ok(p.to_owned()),
        (None, None) => Err(invalid("missing: every repository needs a name".into())),
    }
}

/// Validates the merged list; an error names the entry it is in.
fn validate(config: &Config, m: &Merged) -> Result<Vec<RepoConfig>, ChangeError> {
    crate::config::validate_repositories(&m.values, &config.main, &config.source).map_err(
        |EntryError {
             index,
             key,
             reason,
             conflict,
         }| {
            let name = m.values.get(index).and_then(entry_name).unwrap_or("?");
            if conflict {
                ChangeError::Conflict(reason)
            } else {
                ChangeError::Invalid {
                    key: format!("repository {name}: {key}"),
                    reason,
                }
            }
        },
    )
}

fn origins(repos: &[RepoConfig], m: &Merged) -> BTreeMap<RepoName, Origin> {
    repos
        .iter()
        .zip(&m.origins)
        .map(|(r, o)| (r.name.clone(), o.clone()))
        .collect()
}
