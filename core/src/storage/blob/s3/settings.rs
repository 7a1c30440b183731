//! `storage.blobs.s3` as the store needs it, and the connection it makes: object_store's S3
//! client on ring (like the rest of Berth), path-style against a configured endpoint.

use std::sync::Arc;

use super::{io_err, S3BlobStore};
use crate::storage::Result;

/// Where the bucket is and how to reach it (`storage.blobs.s3`).
#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub prefix: String,
    /// `None`: from the environment or the instance.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub conditional_put: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("conditional_put", &self.conditional_put)
            .finish()
    }
}

impl S3BlobStore {
    /// Connects to the bucket (no request yet: a wrong endpoint shows at the first use, which
    /// the readiness probe makes at start).
    pub fn open(settings: &S3Settings) -> Result<S3BlobStore> {
        // reqwest's rustls is built without a provider: ring, like the rest of Berth.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let mut b = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(&settings.bucket)
            .with_region(&settings.region);
        if let Some(endpoint) = &settings.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        if !settings.conditional_put {
            b = b.with_conditional_put(object_store::aws::S3ConditionalPut::Disabled);
        }
        let store = b.build().map_err(io_err)?;
        Ok(S3BlobStore::new(Arc::new(store), &settings.prefix))
    }
}
