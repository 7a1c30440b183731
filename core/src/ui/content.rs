//! Content actions from the UI: delete a tag or a manifest, point a tag back at what it named
//! before. Each is offered only to a viewer with the privilege the registry API would ask for
//! (delete on the repository that stores the image; push to restore a tag), checked again
//! here, and done by the same service call as from the admin API.

use http::StatusCode;

use super::common::readable;
use super::{form, Ctx, PageError, PageResult};
use crate::auth::Action;
use crate::oci::{Digest, ImageName, Reference, RepoName, Tag};
use crate::registry::content;
use crate::registry::RepoEntry;
use crate::storage::metadata::lifecycle::Restore;
use crate::storage::Namespace;

/// The repository that stores what a viewer changes through `entry` (itself if hosted).
pub fn store_of(entry: &RepoEntry) -> &RepoName {
    entry.write_repo.as_ref().unwrap_or(entry.repo.name())
}

/// Whether the viewer may delete in `entry` (a proxy's cache is the remote's: no).
pub fn may_delete(ctx: &Ctx<'_>, entry: &RepoEntry) -> bool {
    entry.write_repo.is_some() && ctx.viewer.may(ctx.reg, store_of(entry), Action::Delete)
}

/// Whether the viewer may point tags of `entry` back (a hosted repository only: history is
/// kept where tags are written).
pub fn may_restore(ctx: &Ctx<'_>, entry: &RepoEntry) -> bool {
    entry.write_repo.as_ref() == Some(entry.repo.name())
        && ctx.viewer.may(ctx.reg, entry.repo.name(), Action::Write)
}

fn bad(what: &str, value: &str, e: impl std::fmt::Display) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, format!("{what} {value:?}: {e}"))
}

fn refused(what: &str) -> PageError {
    PageError::new(
        StatusCode::FORBIDDEN,
        format!("you may not {what} in this repository"),
    )
}

fn image_page(repo: &str, image: &ImageName) -> String {
    format!(
        "/ui/image?repo={}&image={}",
        super::urlencode(repo),
        super::urlencode(image.as_str())
    )
}

/// `POST /ui/delete` (`repo`, `image`, `ref`: a tag, or a digest for the manifest itself).
pub async fn delete(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    let f = form(body).await?;
    let get = |k: &str| crate::http::query_get(&f, k).unwrap_or_default();
    let entry = readable(ctx, get("repo"))?;
    if !may_delete(ctx, &entry) {
        return Err(refused("delete"));
    }
    let image: ImageName = get("image")
        .parse()
        .map_err(|e| bad("image", get("image"), e))?;
    let reference: Reference = get("ref").parse().map_err(|e| bad("ref", get("ref"), e))?;
    content::delete(ctx.reg, &entry, &image, &reference, ctx.viewer.actor()).await?;
    let what = match &reference {
        Reference::Tag(t) => format!("tag {t} deleted; restore it below within the undo window"),
        Reference::Digest(d) => format!("manifest {d} deleted with its tags"),
    };
    Ok(ctx.done(&image_page(entry.repo.name().as_str(), &image), &what))
}

/// `POST /ui/restore` (`repo`, `image`, `tag`, and optionally `digest` to point it at).
pub async fn restore(ctx: &Ctx<'_>, body: crate::http::Body) -> PageResult {
    let f = form(body).await?;
    let get = |k: &str| crate::http::query_get(&f, k).unwrap_or_default();
    let entry = readable(ctx, get("repo"))?;
    if !may_restore(ctx, &entry) {
        return Err(refused("restore tags"));
    }
    let image: ImageName = get("image")
        .parse()
        .map_err(|e| bad("image", get("image"), e))?;
    let tag: Tag = get("tag").parse().map_err(|e| bad("tag", get("tag"), e))?;
    let digest: Option<Digest> = match get("digest") {
        "" => None,
        d => Some(d.parse().map_err(|e| bad("digest", d, e))?),
    };
    let ns = Namespace::new(entry.repo.name().clone(), image.clone());
    let done = content::restore(
        ctx.reg,
        &ns,
        Some(&tag),
        digest.as_ref(),
        ctx.viewer.actor(),
    )
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "restoring a tag from the UI failed");
        PageError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot restore right now")
    })?;
    let message = match done {
        Restore::Done { digest, .. } => format!("tag {tag} points at {digest} again"),
        Restore::NoHistory => {
            return Err(PageError::not_found(format!(
                "tag {tag} has no earlier state"
            )))
        }
        Restore::Collected(d) => {
            return Err(PageError::not_found(format!(
                "{d} is gone: garbage collection removed it after the undo window"
            )))
        }
    };
    Ok(ctx.done(&image_page(entry.repo.name().as_str(), &image), &message))
}
