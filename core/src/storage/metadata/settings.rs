//! The settings half of the metadata contract: what operators change at run time (through the
//! admin API or the UI) lives in the metadata store, so it survives a restart and every core
//! sharing one database serves the same repositories, users and tokens.
//!
//! A setting is a JSON document in the config file's shape, keyed by kind and name. The config
//! file stays the bootstrap: a setting adds to it or overrides one of its entries, and a
//! setting without a body removes a config-file entry. Every change bumps one version number,
//! so a core notices another core's changes with one cheap read.

use async_trait::async_trait;

use super::{Actor, Result};
use crate::oci::RepoName;

/// Kinds of settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettingKind {
    Repository,
    User,
    Role,
    Token,
    /// A replication rule.
    Replication,
}

impl SettingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKind::Repository => "repository",
            SettingKind::User => "user",
            SettingKind::Role => "role",
            SettingKind::Token => "token",
            SettingKind::Replication => "replication",
        }
    }
}

/// One stored setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub name: String,
    /// JSON; `None`: the config file's entry of this name is removed.
    pub body: Option<String>,
    /// Who changed it last.
    pub actor: String,
    /// Unix milliseconds.
    pub updated_at: i64,
}

#[async_trait]
pub trait SettingsStore: Send + Sync {
    /// Every setting of a kind, by name.
    async fn settings(&self, kind: SettingKind) -> Result<Vec<Setting>>;
    /// Writes (or, with a `None` body, tombstones) one setting and bumps the version.
    async fn put_setting(
        &self,
        kind: SettingKind,
        name: &str,
        body: Option<&str>,
        actor: &str,
    ) -> Result<()>;
    /// Forgets a setting (the config file's entry, if any, applies again); `false` if there
    /// was none.
    async fn remove_setting(&self, kind: SettingKind, name: &str) -> Result<bool>;
    /// A number that changes whenever any setting does.
    async fn settings_version(&self) -> Result<i64>;
    /// What deleting a repository does to its content: every manifest goes to the trash (the
    /// collector frees the bytes after the undo window) and every tag goes, with history.
    /// Returns the number of manifests trashed.
    async fn retire_repository(&self, repo: &RepoName, actor: Actor<'_>) -> Result<u64>;
}
