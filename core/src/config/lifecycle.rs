//! The `gc` section: the collector's schedule, grace period, undo window and history.

use berth_config::{ConfigError, Source};

use super::raw::RawGc;
use crate::lifecycle::GcSettings;

pub(super) fn gc_settings(raw: RawGc, source: &Source) -> Result<GcSettings, ConfigError> {
    let d = GcSettings::default();
    let interval = raw.interval.map(|i| i.get());
    let settings = GcSettings {
        interval: match interval {
            None => d.interval,
            Some(i) if i.is_zero() => None,
            Some(i) => Some(i),
        },
        grace: raw.grace.map_or(d.grace, |g| g.get()),
        undo_window: raw.undo_window.map_or(d.undo_window, |u| u.get()),
        history: raw.history_retention.map_or(d.history, |h| h.get()),
    };
    if settings.history < settings.undo_window {
        return Err(source.err(
            "gc.history_retention",
            format!(
                "{:?} is shorter than gc.undo_window ({:?}): a restore needs the tag history",
                settings.history, settings.undo_window
            ),
        ));
    }
    Ok(settings)
}
