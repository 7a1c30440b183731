//! `notifications.endpoints`: where push, pull and delete events go.

use std::collections::HashSet;
use std::time::Duration;

use super::raw::RawNotifications;
use super::{ConfigError, Source};
use crate::events::{Action, EndpointSettings};

/// Validates every endpoint; errors name `notifications.endpoints[i].key`.
pub fn endpoints(
    raw: RawNotifications,
    source: &Source,
) -> Result<Vec<EndpointSettings>, ConfigError> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    let allow_private = raw.allow_private_targets;
    for (i, e) in raw.endpoints.into_iter().enumerate() {
        let key = |k: &str| format!("notifications.endpoints[{i}].{k}");
        if e.name.is_empty() || !names.insert(e.name.clone()) {
            return Err(source.err(key("name"), "names must be unique and not empty"));
        }
        let url: http::Uri = e
            .url
            .parse()
            .map_err(|err| source.err(key("url"), format!("{:?} is not a URL: {err}", e.url)))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(source.err(
                key("url"),
                format!("{:?} must be an http:// or https:// URL", e.url),
            ));
        }
        // The URL is logged with every failed delivery: credentials in it would be too.
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(source.err(
                key("url"),
                "must not carry user:password@ (the URL is logged); send credentials in \
                 `headers` instead, e.g. Authorization",
            ));
        }
        let refused = url.host().and_then(crate::events::target::refused_host);
        if let (Some(why), false) = (refused, allow_private) {
            return Err(source.err(
                key("url"),
                format!(
                    "{why}: events are not sent inside the network unless \
                     notifications.allow_private_targets is true"
                ),
            ));
        }
        for h in e.headers.iter() {
            let valid = http::HeaderName::from_bytes(h.0.as_bytes()).is_ok()
                && http::HeaderValue::from_str(h.1).is_ok();
            if !valid {
                return Err(source.err(key("headers"), format!("{:?} is not a valid header", h.0)));
            }
        }
        let mut ignored_actions = Vec::new();
        for (j, a) in e.ignore.actions.iter().enumerate() {
            let action = Action::parse(a).ok_or_else(|| {
                source.err(
                    key(&format!("ignore.actions[{j}]")),
                    format!("{a:?} is not one of push, pull, mount, delete"),
                )
            })?;
            ignored_actions.push(action);
        }
        let backoff: Duration = e.backoff.map_or(Duration::from_secs(1), Into::into);
        let max_backoff: Duration = e.max_backoff.map_or(Duration::from_secs(300), Into::into);
        if backoff.is_zero() || max_backoff < backoff {
            return Err(source.err(
                key("max_backoff"),
                "backoff must be above 0 and max_backoff at least backoff",
            ));
        }
        out.push(EndpointSettings {
            name: e.name,
            url,
            headers: e.headers.into_iter().collect(),
            timeout: e.timeout.map_or(Duration::from_secs(5), Into::into),
            backoff,
            max_backoff,
            queue: e.queue.unwrap_or(10_000).max(1),
            ca_file: e.ca_file.map(|p| source.resolve(&p)),
            ignored_actions,
            ignored_media_types: e.ignore.media_types,
            allow_private,
        });
    }
    Ok(out)
}
