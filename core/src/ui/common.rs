//! What several pages share: sizes and times as people read them, the host the browser used,
//! and the one way a page finds a repository (only one the viewer may read; any other is "not
//! found", so a page never tells who may not read what exists).

use std::sync::Arc;

use super::{Ctx, PageError};
use crate::oci::RepoName;
use crate::registry::RepoEntry;

/// `1.2 MiB`-style sizes.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `2026-12-07 15:04 UTC` for Unix seconds.
pub fn when(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => secs.to_string(),
    }
}

/// `host[:port]` of the base URL the client used.
pub fn client_host(ctx: &Ctx<'_>) -> String {
    let b = ctx.base.as_str();
    b.split_once("://").map_or(b, |(_, h)| h).to_owned()
}

/// The repository `name`, if the viewer may read it.
pub fn readable(ctx: &Ctx<'_>, name: &str) -> Result<Arc<RepoEntry>, PageError> {
    let missing = || PageError::not_found(format!("no repository named {name:?} you may read"));
    let repo: RepoName = name.parse().map_err(|_| missing())?;
    if !ctx.viewer.may_read(ctx.reg, &repo) {
        return Err(missing());
    }
    ctx.reg.repos().get(&repo).cloned().ok_or_else(missing)
}
