//! Statements of the summary store: three grouped reads over one range of images.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;

use super::{db, text, SqlMetadata};
use crate::oci::RepoName;
use crate::storage::metadata::summary::{ImageSummary, SummaryStore};
use crate::storage::metadata::Result;

fn unsigned(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

#[async_trait]
impl SummaryStore for SqlMetadata {
    async fn image_summaries(
        &self,
        repo: &RepoName,
        first: &str,
        last: &str,
    ) -> Result<Vec<ImageSummary>> {
        let range = |sql: &'static str| {
            sqlx::query(sql)
                .bind(repo.as_str())
                .bind(first.to_owned())
                .bind(last.to_owned())
        };
        let mut out: BTreeMap<String, ImageSummary> = BTreeMap::new();
        let rows = range(
            "SELECT image, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT), MAX(pushed_at), \
             MAX(pulled_at) FROM manifests WHERE repo = $1 AND image >= $2 AND image <= $3 \
             AND deleted_at IS NULL GROUP BY image",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        for r in &rows {
            let image = text(r, 0)?;
            out.insert(
                image.clone(),
                ImageSummary {
                    image,
                    manifests: unsigned(r.try_get(1).map_err(db)?),
                    bytes: unsigned(r.try_get(2).map_err(db)?),
                    pushed_at: r.try_get(3).map_err(db)?,
                    pulled_at: r.try_get(4).map_err(db)?,
                    tags: 0,
                },
            );
        }
        let tags = range(
            "SELECT image, COUNT(*) FROM tags WHERE repo = $1 AND image >= $2 AND image <= $3 \
             GROUP BY image",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        for r in &tags {
            if let Some(s) = out.get_mut(&text(r, 0)?) {
                s.tags = unsigned(r.try_get(1).map_err(db)?);
            }
        }
        let blobs = range(
            "SELECT l.image, CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM blob_links l \
             JOIN blobs b ON b.digest = l.digest WHERE l.repo = $1 AND l.image >= $2 \
             AND l.image <= $3 GROUP BY l.image",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db)?;
        for r in &blobs {
            if let Some(s) = out.get_mut(&text(r, 0)?) {
                s.bytes += unsigned(r.try_get(1).map_err(db)?);
            }
        }
        Ok(out.into_values().collect())
    }
}
