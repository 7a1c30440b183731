//! The `auth.oidc` section: checked here, so a role that does not exist, an issuer that is not
//! a URL, an unreadable secret file or a workload rule that would take any job of a platform
//! stops the start with the key that is wrong. The issuers themselves are asked only when a
//! login needs them: a provider that is down at start does not keep the registry down.

use super::raw;
use crate::auth::{OidcConfig, OidcPeople, Secret, WorkloadRule};

type Fail = (String, String);

/// Builds the OIDC settings; `roles` are the names defined under `auth.roles`.
pub(super) fn oidc_config(
    raw: raw::RawOidc,
    roles: &std::collections::HashSet<&str>,
    source: &berth_config::Source,
) -> Result<OidcConfig, Fail> {
    let err = |key: &str, reason: String| (format!("oidc.{key}"), reason);
    let known =
        |key: &str, wanted: &[String]| match wanted.iter().find(|r| !roles.contains(r.as_str())) {
            Some(r) => Err(err(key, format!("no role named {r} under auth.roles"))),
            None => Ok(()),
        };
    let people = match (raw.issuer, raw.client_id) {
        (Some(issuer), Some(client_id)) => {
            issuer_url(&issuer).map_err(|e| err("issuer", e))?;
            for (group, wanted) in &raw.group_roles {
                known(&format!("group_roles[{group:?}]"), wanted)?;
            }
            let client_secret_file = raw.client_secret_file.map(|f| source.resolve(&f));
            if let Some(path) = &client_secret_file {
                Secret::read(path)
                    .map_err(|e| err("client_secret_file", format!("{}: {e}", path.display())))?;
            }
            let mut scopes = raw
                .scopes
                .unwrap_or_else(|| vec!["openid".into(), "profile".into()]);
            if !scopes.iter().any(|s| s == "openid") {
                scopes.insert(0, "openid".into());
            }
            Some(OidcPeople {
                issuer,
                client_id,
                client_secret_file,
                scopes,
                username_claim: raw
                    .username_claim
                    .unwrap_or_else(|| "preferred_username".into()),
                groups_claim: raw.groups_claim.unwrap_or_else(|| "groups".into()),
                group_roles: raw.group_roles.into_iter().collect(),
            })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                "client_id",
                "issuer is given but client_id is not".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(err("issuer", "client_id is given but issuer is not".into()))
        }
    };
    let mut workload = Vec::new();
    for (i, w) in raw.workload.into_iter().enumerate() {
        let key = |k: &str| format!("workload[{i}].{k}");
        issuer_url(&w.issuer).map_err(|e| err(&key("issuer"), e))?;
        if w.audience.is_empty() {
            return Err(err(&key("audience"), "must not be empty".into()));
        }
        if w.claims.is_empty() {
            return Err(err(
                &key("claims"),
                "name at least one claim to match (e.g. repository: \"org/*\"): the issuer and \
                 audience alone admit every job of the platform"
                    .into(),
            ));
        }
        if w.roles.is_empty() {
            return Err(err(
                &key("roles"),
                "a rule without roles grants nothing".into(),
            ));
        }
        known(&key("roles"), &w.roles)?;
        workload.push(WorkloadRule {
            issuer: w.issuer,
            audience: w.audience,
            claims: w.claims.into_iter().collect(),
            roles: w.roles,
        });
    }
    if people.is_none() && workload.is_empty() {
        return Err(err(
            "issuer",
            "auth.oidc needs issuer and client_id (single sign-on), workload rules, or both".into(),
        ));
    }
    let ca_file = raw.ca_file.map(|f| source.resolve(&f));
    if let Some(path) = &ca_file {
        berth_certs::client_roots(Some(path)).map_err(|e| err("ca_file", e.to_string()))?;
    }
    Ok(OidcConfig {
        people,
        workload,
        ca_file,
        timeout: raw
            .timeout
            .map_or(std::time::Duration::from_secs(5), Into::into),
    })
}

/// An issuer must be an absolute http(s) URL without query or fragment.
fn issuer_url(s: &str) -> Result<(), String> {
    let ok = (s.starts_with("https://") || s.starts_with("http://"))
        && !s.contains('?')
        && !s.contains('#')
        && openidconnect::IssuerUrl::new(s.to_owned()).is_ok();
    if ok {
        Ok(())
    } else {
        Err(format!("{s} is not an http(s) URL an issuer can have"))
    }
}
