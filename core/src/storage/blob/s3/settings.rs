//! `storage.blobs.s3` as the store needs it, and the connection it makes: object_store's S3
//! client on ring (like the rest of Berth), path-style against a configured endpoint.

use std::io;
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
    /// Extra trust for an endpoint behind a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// Blob reads answered with a presigned URL of the bucket.
    pub redirect: bool,
    /// Each request's payload hash signed (SigV4), or sent as `UNSIGNED-PAYLOAD`.
    pub sign_payload: bool,
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
            .field("ca_file", &self.ca_file)
            .field("redirect", &self.redirect)
            .field("sign_payload", &self.sign_payload)
            .finish()
    }
}

impl S3BlobStore {
    /// Builds the client (no request yet: [`S3BlobStore::check`] makes the first).
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
        // Unsigned, the payload costs no second SHA-256 here nor on the server (about half
        // of a core's CPU per pushed byte): safe over TLS, and where the network to the
        // bucket is trusted; every blob's digest is verified by the registry either way.
        b = b.with_unsigned_payload(!settings.sign_payload);
        if let (Some(id), Some(secret)) = (&settings.access_key_id, &settings.secret_access_key) {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        if !settings.conditional_put {
            b = b.with_conditional_put(object_store::aws::S3ConditionalPut::Disabled);
        }
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| io::Error::other(format!("ca_file {}: {e}", path.display())))?;
            let mut options = object_store::ClientOptions::default();
            for cert in object_store::Certificate::from_pem_bundle(&pem).map_err(io_err)? {
                options = options.with_root_certificate(cert);
            }
            b = b.with_client_options(options);
        }
        // While the endpoint is down, give up after a few seconds (the request answers 503 and
        // the edge's health check takes the core out) instead of retrying for minutes.
        b = b.with_retry(object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: std::time::Duration::from_secs(8),
            ..object_store::RetryConfig::default()
        });
        let store = Arc::new(b.build().map_err(io_err)?);
        let blobs = S3BlobStore::new(store.clone(), &settings.prefix, settings.conditional_put);
        Ok(if settings.redirect {
            blobs.with_redirects(store)
        } else {
            blobs
        })
    }
}

impl S3BlobStore {
    /// One cheap request, so a wrong endpoint, bucket or key stops the start with the server's
    /// answer instead of failing every push later.
    pub async fn check(&self) -> Result<()> {
        // A listing, not a HEAD: a HEAD's 404 cannot tell a missing key from a missing bucket.
        self.store
            .list_with_delimiter(Some(&self.key("blobs")))
            .await
            .map(|_| ())
            .map_err(io_err)
    }
}
