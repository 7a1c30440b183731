//! The summary half of the metadata contract: what the web UI's first pages show of a
//! repository's images at a glance (how many tags, how big, when last pushed and pulled),
//! computed by the database in a few grouped statements rather than by walking manifests.

use async_trait::async_trait;

use super::Result;
use crate::oci::RepoName;

/// One image of a repository, summed up.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    pub image: String,
    pub tags: u64,
    /// Manifests not deleted.
    pub manifests: u64,
    /// Bytes of the blobs linked into the image and of its manifests (a layer shared with
    /// another image counts in both).
    pub bytes: u64,
    /// Unix seconds of the newest push.
    pub pushed_at: Option<i64>,
    /// Unix seconds of the newest pull (pulls are recorded in batches, so up to a minute late).
    pub pulled_at: Option<i64>,
}

#[async_trait]
pub trait SummaryStore: Send + Sync {
    /// The images of `repo` from `first` to `last` (inclusive, by name) summed up, by name;
    /// images with no live manifest are left out.
    async fn image_summaries(
        &self,
        repo: &RepoName,
        first: &str,
        last: &str,
    ) -> Result<Vec<ImageSummary>>;
}
