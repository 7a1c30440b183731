//! Builds the served registry from a config: every repository over the storage, groups once
//! their members exist, and access control. At start-up from the config file merged with the
//! settings changed at run time; on every later change again, reusing each repository whose
//! entry did not change (a proxy keeps its caches and remote state, a hosted repository its
//! upload sessions).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Control, Registry, RepoEntry, RepoMap};
use crate::auth::Auth;
use crate::config::{Config, Limits, RepoConfig, RepoSpec};
use crate::oci::RepoName;
use crate::repo::{GroupRepository, HostedRepository, ProxyRepository, Repository};
use crate::storage::Stores;

/// A part of the registry that could not be built, named: a repository, the notifications
/// endpoint, the token key.
#[derive(Debug, thiserror::Error)]
#[error("{owner}: {source}")]
pub struct BuildError {
    pub owner: String,
    pub source: std::io::Error,
}

/// Builds the registry the binary serves; `config.repositories` is the merged list.
pub async fn registry(
    config: &Config,
    stores: &Stores,
    control: Control,
) -> Result<Registry, BuildError> {
    let repos = entries(
        &config.repositories,
        stores,
        &config.limits,
        &RepoMap::new(),
    )?;
    let events = Arc::new(notifier(config)?);
    Ok(Registry {
        repos: std::sync::RwLock::new(Arc::new(repos)),
        context_path: config.main.context_path.clone(),
        trusted_proxies: config.trusted_proxies.clone(),
        body_idle_timeout: config.limits.body_idle_timeout,
        auth: auth(config, stores).await?,
        lifecycle: Arc::new(crate::lifecycle::Lifecycle::new(
            stores.clone(),
            config.gc.clone(),
            lifecycles(&config.repositories),
            events.clone(),
            crate::storage::metadata::cluster::process_name().to_owned(),
        )),
        control: Arc::new(control),
        events,
        replication: Arc::new(crate::replicate::Replicator::new(
            config.replication.clone(),
            stores.meta.clone(),
            crate::storage::metadata::cluster::process_name().to_owned(),
        )),
    })
}

/// The event notifier; its delivery tasks start with the server.
fn notifier(config: &Config) -> Result<crate::events::Notifier, BuildError> {
    let host = crate::storage::metadata::cluster::hostname();
    let source = crate::events::SourceInfo {
        addr: format!("{host}:{}", config.main.listen.port()),
        instance_id: format!("{:032x}", rand::random::<u128>()),
    };
    crate::events::Notifier::new(&config.notifications, source).map_err(|e| BuildError {
        owner: format!("notifications endpoint {}", e.endpoint),
        source: std::io::Error::other(e.reason),
    })
}

/// Every repository's life-cycle settings.
pub(super) fn lifecycles(
    repos: &[RepoConfig],
) -> BTreeMap<RepoName, crate::lifecycle::RepoLifecycle> {
    repos
        .iter()
        .map(|r| (r.name.clone(), r.lifecycle.clone()))
        .collect()
}

/// The API layer's entries for `configs`, reusing those of `previous` whose settings are the
/// same (groups are always rebuilt: they hold their members).
pub(super) fn entries(
    configs: &[RepoConfig],
    stores: &Stores,
    limits: &Limits,
    previous: &RepoMap,
) -> Result<RepoMap, BuildError> {
    let built = repositories(configs, stores, limits, previous)?;
    Ok(configs
        .iter()
        .filter_map(|r| {
            let repo = built.get(&r.name)?.clone();
            let mirrors = match &r.spec {
                RepoSpec::Group(g) => g.mirrors.clone(),
                _ => BTreeMap::new(),
            };
            let entry = RepoEntry {
                repo,
                v1_enabled: r.v1_enabled,
                write_repo: write_repo(r),
                mirrors,
                config: r.clone(),
            };
            Some((r.name.clone(), Arc::new(entry)))
        })
        .collect())
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

/// One hosted or proxy repository (groups are built by [`repositories`]).
fn leaf(
    r: &RepoConfig,
    stores: &Stores,
    limits: &Limits,
) -> Result<Option<Arc<dyn Repository>>, BuildError> {
    Ok(Some(match &r.spec {
        RepoSpec::Hosted { write_policy } => Arc::new(
            HostedRepository::new(r.name.clone(), stores.clone(), *write_policy)
                .with_upload_limits(limits.uploads)
                .with_lifecycle(r.lifecycle.clone()),
        ),
        RepoSpec::Proxy(settings) => Arc::new(
            ProxyRepository::new(r.name.clone(), stores.clone(), settings.clone()).map_err(
                |source| BuildError {
                    owner: format!("repository {}", r.name),
                    source,
                },
            )?,
        ),
        RepoSpec::Group(_) => return Ok(None),
    }))
}

/// Hosted and proxy repositories first; then groups, each once all its members exist (config
/// validation has ruled out cycles and missing members, so this terminates).
fn repositories(
    configs: &[RepoConfig],
    stores: &Stores,
    limits: &Limits,
    previous: &RepoMap,
) -> Result<BTreeMap<RepoName, Arc<dyn Repository>>, BuildError> {
    let mut built: BTreeMap<RepoName, Arc<dyn Repository>> = BTreeMap::new();
    for r in configs {
        let same = previous
            .get(&r.name)
            .filter(|p| p.config.entry == r.entry && !matches!(r.spec, RepoSpec::Group(_)));
        let repo = match same {
            Some(p) => Some(p.repo.clone()),
            None => leaf(r, stores, limits)?,
        };
        if let Some(repo) = repo {
            built.insert(r.name.clone(), repo);
        }
    }
    let mut pending: Vec<_> = configs
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

/// The repositories unauthenticated clients may pull from.
pub(super) fn anonymous(repos: &[RepoConfig]) -> std::collections::HashSet<RepoName> {
    repos
        .iter()
        .filter(|r| r.anonymous_pull)
        .map(|r| r.name.clone())
        .collect()
}

/// Access control from the `auth` section; without one, open access (and a warning).
async fn auth(config: &Config, stores: &Stores) -> Result<Option<Arc<Auth>>, BuildError> {
    let Some(a) = &config.auth else {
        tracing::warn!(
            "no auth section in the config: anyone may push, pull and delete (development only)"
        );
        return Ok(None);
    };
    let legacy = config.storage.root.join("auth");
    let auth = Auth::open(
        a,
        anonymous(&config.repositories),
        &legacy,
        stores.meta.clone(),
    )
    .await
    .map_err(|e| BuildError {
        owner: "auth".to_owned(),
        source: std::io::Error::other(e),
    })?;
    Ok(Some(Arc::new(auth)))
}
