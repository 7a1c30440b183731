//! The audit trail: one line per change, under the `berth_core::audit` target, naming who did
//! what to which repository. Written here and nowhere else, so every front-end's changes read
//! the same; secrets never reach it (callers pass names, never credentials).

use std::net::IpAddr;

/// A registry-API change: a pushed manifest (a tag move) or a delete.
pub fn content(
    who: &str,
    from: IpAddr,
    action: &str,
    repository: &str,
    image: &str,
    reference: &str,
) {
    tracing::info!(
        target: "berth_core::audit",
        who,
        from = %from,
        action,
        repository,
        image,
        reference,
        "audit"
    );
}
