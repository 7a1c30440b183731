//! Which repository and image a V2 request is about: the name as the client spelled it on
//! this listener, resolved against the repositories served now, and — mirror mode — the
//! repository a group hands an `?ns=` request to.

use std::sync::Arc;

use http::request::Parts;
use http::StatusCode;

use super::{err, query, query_get, ApiError, Listener, Registry, RepoEntry};
use crate::oci::{ErrorCode, ImageName};
use crate::repo::Repository;

/// The resolved target of a V2 request.
pub struct Target {
    /// The repository the client named.
    pub entry: Arc<RepoEntry>,
    /// Mirror mode: the repository a group hands an `?ns=` read to (GET and HEAD only).
    pub mirror: Option<Arc<RepoEntry>>,
    pub image: ImageName,
    /// The path prefix the client used for this repository (`""` on a connector).
    pub prefix: String,
    /// `scheme://host[:port]` as the client sees it.
    pub base: String,
    /// Who asks, for the tag history: a user name, or `anonymous`.
    pub actor: String,
}

impl Target {
    /// The repository that serves the request.
    pub fn repo(&self) -> &dyn Repository {
        self.mirror.as_ref().unwrap_or(&self.entry).repo.as_ref()
    }

    /// The name as the client spells it.
    pub fn client_name(&self) -> String {
        self.image.prefixed(&self.prefix)
    }

    /// An absolute URL under this image: `base/v2/<name>/<suffix>`.
    pub fn url(&self, suffix: &str) -> String {
        format!("{}/v2/{}/{suffix}", self.base, self.client_name())
    }
}

impl Registry {
    /// Resolves a client-supplied name to a repository and image.
    pub(super) fn target(
        &self,
        listener: &Listener,
        name: &str,
        base: String,
        actor: &str,
        req: &Parts,
    ) -> Result<Target, ApiError> {
        let image: ImageName = name.parse().map_err(|e| {
            err(
                ErrorCode::NameInvalid,
                format!("invalid repository name {name:?}: {e}"),
            )
        })?;
        let (entry, image, prefix) = match listener {
            Listener::Connector(entry) => (entry.clone(), image, String::new()),
            Listener::Main => {
                let (first, rest) = image.split_first();
                let entry = self.repos().get(first).cloned().ok_or_else(|| {
                    err(
                        ErrorCode::NameUnknown,
                        format!("no repository named {first:?}"),
                    )
                })?;
                let image = rest.ok_or_else(|| {
                    err(
                        ErrorCode::NameInvalid,
                        format!("on the main port, names are <repository>/<image>; {name:?} has no image part"),
                    )
                })?;
                let prefix = entry.repo.name().to_string();
                (entry, image, prefix)
            }
        };
        let mirror = self.mirror(&entry, req)?;
        Ok(Target {
            entry,
            mirror,
            image,
            prefix,
            base,
            actor: actor.to_owned(),
        })
    }

    /// Mirror mode: containerd and CRI-O name the upstream a pull is for in `?ns=`; on a group
    /// with `mirrors` the mapped repository serves it. An upstream the group does not mirror
    /// is a 404, so the node falls back to the upstream itself instead of getting another
    /// registry's image of the same name. Only reads are handed on: a write with `ns` goes where
    /// any write to the group goes (its writable member), and is authorised there.
    fn mirror(&self, entry: &RepoEntry, req: &Parts) -> Result<Option<Arc<RepoEntry>>, ApiError> {
        let read = req.method == http::Method::GET || req.method == http::Method::HEAD;
        if entry.mirrors.is_empty() || !read {
            return Ok(None);
        }
        let q = query(req);
        let Some(ns) = query_get(&q, "ns") else {
            return Ok(None);
        };
        let unknown = |m: String| err(ErrorCode::NameUnknown, m).with_status(StatusCode::NOT_FOUND);
        let Some(serving) = entry.mirrors.get(&ns.to_ascii_lowercase()) else {
            let known: Vec<&str> = entry.mirrors.keys().map(String::as_str).collect();
            return Err(unknown(format!(
                "{} does not mirror {ns:?} (it mirrors {})",
                entry.repo.name(),
                known.join(", ")
            )));
        };
        self.repos()
            .get(serving)
            .cloned()
            .map(Some)
            .ok_or_else(|| unknown(format!("mirror {serving} for {ns} is not served")))
    }
}
