//! Which socket a request arrived on: what the router, the accept loops and the metrics
//! labels all need to know of a listener, and nothing more.

use crate::oci::RepoName;

/// A listener of the core.
#[derive(Clone)]
pub enum Port {
    Main,
    /// The metrics listener: `/metrics`, `/healthz`, `/readyz` only.
    Metrics,
    /// A repository's connector, resolved to the repository's current entry per request.
    Connector(RepoName),
}
