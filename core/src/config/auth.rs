//! The `auth` section: users (with validated argon2 hashes) and roles.

use std::time::Duration;

use super::raw;
use super::{parse_duration, AuthConfig, RoleConfig, UserConfig};

pub(super) fn auth_config(raw: raw::RawAuth) -> Result<AuthConfig, (String, String)> {
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
    let dur = |k: &str, v: &Option<String>, default: u64| -> Result<Duration, (String, String)> {
        match v {
            Some(v) => parse_duration(v).map_err(|e| (k.to_owned(), e)),
            None => Ok(Duration::from_secs(default)),
        }
    };
    Ok(AuthConfig {
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
        token_ttl: dur("token_ttl", &raw.token_ttl, 300)?,
        limiter: {
            let d = crate::auth::LimiterConfig::default();
            crate::auth::LimiterConfig {
                attempts: raw.login_attempts.unwrap_or(d.attempts).max(1),
                attempts_per_user: raw
                    .login_attempts_per_user
                    .unwrap_or(d.attempts_per_user)
                    .max(1),
                window: dur("login_window", &raw.login_window, d.window.as_secs())?,
                max_delay: dur(
                    "login_max_delay",
                    &raw.login_max_delay,
                    d.max_delay.as_secs(),
                )?,
            }
        },
    })
}
