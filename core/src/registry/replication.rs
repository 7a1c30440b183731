//! Replication rules changed at run time: a rule created, replaced or deleted through the admin
//! API is a setting in the metadata store (kind `replication`, the entry in the config file's
//! shape), so it survives a restart and every core runs the same rules. The config file stays
//! the bootstrap: a setting overrides its rule of that name, a setting without a body removes
//! it. A stored rule that no longer checks (its repository deleted since) is logged and left
//! out rather than stopping the core.

use serde_json::Value;

use super::control::{ChangeError, Control};
use super::Registry;
use crate::config::RepoConfig;
use crate::replicate::Rule;
use crate::storage::metadata::settings::SettingKind;

impl Control {
    /// The rules in force: the config file's, with the stored settings over them.
    pub async fn replication_rules(&self, repos: &[RepoConfig]) -> Result<Vec<Rule>, ChangeError> {
        let rows = self.stores.meta.settings(SettingKind::Replication).await?;
        let mut rules = self.bootstrap.replication.clone();
        for row in rows {
            rules.retain(|r| r.name != row.name);
            let Some(body) = &row.body else { continue };
            let parsed = serde_json::from_str::<Value>(body)
                .map_err(|e| e.to_string())
                .and_then(|v| {
                    crate::config::replication_rule(&v, repos, &self.bootstrap.source)
                        .map_err(|e| e.to_string())
                });
            match parsed {
                Ok(rule) => rules.push(rule),
                Err(e) => {
                    tracing::error!(rule = %row.name, error = %e, "stored replication rule left out")
                }
            }
        }
        Ok(rules)
    }

    /// Creates or replaces (`entry`) or deletes (`None`) rule `name` for every core.
    pub async fn change_rule(
        &self,
        reg: &Registry,
        name: &str,
        entry: Option<Value>,
        actor: &str,
    ) -> Result<(), ChangeError> {
        let _one = self.changing.lock().await;
        let repos: Vec<RepoConfig> = reg.repos().values().map(|e| e.config.clone()).collect();
        match &entry {
            Some(v) => {
                let rule = crate::config::replication_rule(v, &repos, &self.bootstrap.source)
                    .map_err(|e| ChangeError::Invalid {
                        key: e.key,
                        reason: e.reason,
                    })?;
                if rule.name != name {
                    return Err(ChangeError::Invalid {
                        key: "name".into(),
                        reason: format!("the body names {}, the path {name}", rule.name),
                    });
                }
            }
            None if !reg.replication.rules().iter().any(|r| r.name == name) => {
                return Err(ChangeError::NotFound {
                    kind: "replication rule",
                    name: name.to_owned(),
                })
            }
            None => {}
        }
        let in_file = self.bootstrap.replication.iter().any(|r| r.name == name);
        let meta = &self.stores.meta;
        match (&entry, in_file) {
            (None, false) => {
                meta.remove_setting(SettingKind::Replication, name).await?;
            }
            _ => {
                let body = entry.as_ref().map(Value::to_string);
                meta.put_setting(SettingKind::Replication, name, body.as_deref(), actor)
                    .await?;
            }
        }
        reg.replication
            .replace_rules(self.replication_rules(&repos).await?);
        let verb = if entry.is_some() {
            "put replication rule"
        } else {
            "delete replication rule"
        };
        tracing::info!(target: "berth_core::audit", who = actor, action = verb, rule = name, "audit");
        Ok(())
    }
}
