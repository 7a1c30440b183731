//! The `auth` section: users (with validated argon2 hashes) and roles.

use super::raw;
use crate::auth::{AuthConfig, LimiterConfig, RoleConfig, UserConfig};

pub(super) fn auth_config(
    raw: raw::RawAuth,
    source: &berth_config::Source,
) -> Result<AuthConfig, (String, String)> {
    let role_names: std::collections::HashSet<&str> =
        raw.roles.iter().map(|r| r.name.as_str()).collect();
    let mut seen = std::collections::HashSet::new();
    for (i, u) in raw.users.iter().enumerate() {
        if !seen.insert(u.name.as_str()) {
            return Err((
                format!("users[{i}].name"),
                format!("user {} is defined twice", u.name),
            ));
        }
        crate::auth::password::validate(&u.password_hash)
            .map_err(|e| (format!("users[{i}].password_hash"), e))?;
        if let Some(r) = u.roles.iter().find(|r| !role_names.contains(r.as_str())) {
            return Err((format!("users[{i}].roles"), format!("no role named {r}")));
        }
    }
    let ldap = raw
        .ldap
        .map(|l| super::ldap::ldap_config(l, &role_names, source))
        .transpose()?;
    let oidc = raw
        .oidc
        .map(|o| super::oidc::oidc_config(o, &role_names, source))
        .transpose()?;
    let d = LimiterConfig::default();
    Ok(AuthConfig {
        ldap,
        oidc,
        users: raw
            .users
            .into_iter()
            .map(|u| UserConfig {
                name: u.name,
                password_hash: u.password_hash,
                roles: u.roles,
            })
            .collect(),
        roles: raw
            .roles
            .into_iter()
            .map(|r| RoleConfig {
                name: r.name,
                privileges: r
                    .privileges
                    .into_iter()
                    .map(|p| crate::auth::Privilege {
                        pattern: p.repositories,
                        actions: p.actions,
                    })
                    .collect(),
            })
            .collect(),
        token_ttl: raw
            .token_ttl
            .map_or(std::time::Duration::from_secs(300), Into::into),
        token_key_file: raw.token_key_file.map(|f| source.resolve(&f)),
        limiter: LimiterConfig {
            attempts: raw.login_attempts.unwrap_or(d.attempts).max(1),
            attempts_per_user: raw
                .login_attempts_per_user
                .unwrap_or(d.attempts_per_user)
                .max(1),
            window: raw.login_window.map_or(d.window, Into::into),
            max_delay: raw.login_max_delay.map_or(d.max_delay, Into::into),
        },
    })
}
