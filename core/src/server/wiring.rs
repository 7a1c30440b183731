//! Builds the API layer's view of a config: every repository over the storage, groups once
//! their members exist, and access control.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::ServeError;
use crate::api::{Registry, RepoEntry};
use crate::auth::Auth;
use crate::config::{Config, RepoConfig, RepoSpec};
use crate::oci::RepoName;
use crate::repo::{GroupRepository, HostedRepository, ProxyRepository, Repository};
use crate::storage::Stores;

/// Builds the registry the binary serves.
pub fn registry(config: &Config, stores: &Stores) -> Result<Registry, ServeError> {
    let built = repositories(config, stores)?;
    let repos = config
        .repositories
        .iter()
        .filter_map(|r| {
            let repo = built.get(&r.name)?.clone();
            let entry = RepoEntry {
                repo,
                v1_enabled: r.v1_enabled,
                write_repo: write_repo(r),
            };
            Some((r.name.clone(), Arc::new(entry)))
        })
        .collect();
    Ok(Registry {
        repos,
        context_path: config.main.context_path.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        body_idle_timeout: config.limits.body_idle_timeout,
        auth: auth(config)?,
        lifecycle: Arc::new(crate::lifecycle::Lifecycle::new(
            stores.clone(),
            config.gc.clone(),
            config
                .repositories
                .iter()
                .map(|r| (r.name.clone(), r.lifecycle.clone()))
                .collect(),
        )),
    })
}

/// Where writes to `r` land, for privilege checks: itself if hosted, a group's writable
/// member, nowhere for a proxy.
fn write_repo(r: &RepoConfig) -> Option<RepoName> {
    match &r.spec {
        RepoSpec::Hosted { .. } => Some(r.name.clone()),
        RepoSpec::Group(g) => g.writable_member.clone(),
        RepoSpec::Proxy(_) => None,
    }
}

/// Hosted and proxy repositories first; then groups, each once all its members exist (config
/// validation has ruled out cycles and missing members, so this terminates).
fn repositories(
    config: &Config,
    stores: &Stores,
) -> Result<BTreeMap<RepoName, Arc<dyn Repository>>, ServeError> {
    let mut built: BTreeMap<RepoName, Arc<dyn Repository>> = BTreeMap::new();
    for r in &config.repositories {
        let repo: Arc<dyn Repository> = match &r.spec {
            RepoSpec::Hosted { write_policy } => Arc::new(
                HostedRepository::new(r.name.clone(), stores.clone(), *write_policy)
                    .with_upload_limits(config.limits.uploads)
                    .with_lifecycle(r.lifecycle.clone()),
            ),
            RepoSpec::Proxy(settings) => Arc::new(
                ProxyRepository::new(r.name.clone(), stores.clone(), settings.clone()).map_err(
                    |source| ServeError::Repository {
                        owner: format!("repository {}", r.name),
                        source,
                    },
                )?,
            ),
            RepoSpec::Group(_) => continue,
        };
        built.insert(r.name.clone(), repo);
    }
    let mut pending: Vec<_> = config
        .repositories
        .iter()
        .filter_map(|r| match &r.spec {
            RepoSpec::Group(g) => Some((r, g)),
            _ => None,
        })
        .collect();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|(r, g)| {
            let members: Option<Vec<_>> = g.members.iter().map(|m| built.get(m).cloned()).collect();
            let Some(members) = members else { return true };
            let writable = g
                .writable_member
                .as_ref()
                .and_then(|w| built.get(w).cloned());
            built.insert(
                r.name.clone(),
                Arc::new(GroupRepository::new(r.name.clone(), members, writable)),
            );
            false
        });
        if pending.len() == before {
            break;
        }
    }
    Ok(built)
}

/// Access control from the `auth` section; without one, open access (and a warning).
fn auth(config: &Config) -> Result<Option<Arc<Auth>>, ServeError> {
    let Some(a) = &config.auth else {
        tracing::warn!(
            "no auth section in the config: anyone may push, pull and delete (development only)"
        );
        return Ok(None);
    };
    let anonymous = config
        .repositories
        .iter()
        .filter(|r| r.anonymous_pull)
        .map(|r| r.name.clone())
        .collect();
    let keys = config.storage.root.join("auth");
    let auth = Auth::new(a, anonymous, &keys).map_err(|source| ServeError::Repository {
        owner: format!("auth (token key in {})", keys.display()),
        source,
    })?;
    Ok(Some(Arc::new(auth)))
}
