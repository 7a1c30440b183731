//! The `auth.ldap` section: checked here, so a typo in a filter or a role name, or an
//! unreadable password or CA file, stops the start with the key that is wrong rather than
//! failing every directory login later.

use super::raw;
use crate::auth::{LdapConfig, Secret};

/// Builds the directory settings; `roles` are the names defined under `auth.roles`.
pub(super) fn ldap_config(
    raw: raw::RawLdap,
    roles: &std::collections::HashSet<&str>,
    source: &berth_config::Source,
) -> Result<LdapConfig, (String, String)> {
    let err = |key: &str, reason: String| (format!("ldap.{key}"), reason);
    let scheme = raw.url.split_once("://").map(|(s, _)| s);
    match (scheme, raw.start_tls) {
        (Some("ldap"), _) => {}
        (Some("ldaps"), false) => {}
        (Some("ldaps"), true) => {
            return Err(err(
                "start_tls",
                "start_tls is for ldap:// URLs; an ldaps:// URL is TLS from the start".into(),
            ))
        }
        _ => {
            return Err(err(
                "url",
                format!("{} is not an ldap:// or ldaps:// URL", raw.url),
            ))
        }
    }
    let bind_password_file = match (&raw.bind_dn, &raw.bind_password_file) {
        (Some(_), Some(file)) => {
            let path = source.resolve(file);
            Secret::read(&path)
                .map_err(|e| err("bind_password_file", format!("{}: {e}", path.display())))?;
            Some(path)
        }
        (Some(_), None) => {
            return Err(err(
                "bind_password_file",
                "bind_dn needs bind_password_file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(err(
                "bind_dn",
                "bind_password_file is given but bind_dn is not".into(),
            ))
        }
        (None, None) => None,
    };
    let user_filter = raw.user_filter.unwrap_or_else(|| "(uid={user})".into());
    if !user_filter.contains("{user}") {
        return Err(err(
            "user_filter",
            format!("{user_filter} does not contain {{user}}"),
        ));
    }
    let group_filter = raw.group_filter.unwrap_or_else(|| "(member={dn})".into());
    if !group_filter.contains("{dn}") && !group_filter.contains("{user}") {
        return Err(err(
            "group_filter",
            format!("{group_filter} contains neither {{dn}} nor {{user}}"),
        ));
    }
    for (group, wanted) in &raw.group_roles {
        if let Some(r) = wanted.iter().find(|r| !roles.contains(r.as_str())) {
            return Err(err(
                &format!("group_roles[{group:?}]"),
                format!("no role named {r} under auth.roles"),
            ));
        }
    }
    let ca_file = raw.ca_file.map(|f| source.resolve(&f));
    if let Some(path) = &ca_file {
        crate::auth::ldap::read_roots(path).map_err(|e| err("ca_file", e))?;
    }
    Ok(LdapConfig {
        url: raw.url,
        start_tls: raw.start_tls,
        bind_dn: raw.bind_dn,
        bind_password_file,
        user_base: raw.user_base,
        user_filter,
        group_base: raw.group_base,
        group_filter,
        group_roles: raw.group_roles.into_iter().collect(),
        ca_file,
        timeout: raw
            .timeout
            .map_or(std::time::Duration::from_secs(5), Into::into),
    })
}
