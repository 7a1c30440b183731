//! The remote as one end of a copy: the Distribution API calls, with what registries differ
//! on handled here — paged listings (`Link`), blob reads that redirect to storage, uploads as
//! `POST` then one streamed `PUT`, cross-repository mounts, and referrers through the OCI 1.1
//! API or, where the remote lacks it, the fallback tag (`sha256-<hex>`) the spec defines,
//! kept up to date when a referrer is pushed to such a remote.

use async_trait::async_trait;
use bytes::Bytes;
use http::{header, Method, StatusCode};

use super::remote::{RemoteRegistry, Small};
use super::side::{Manifest, Side};
use super::ReplicateError;
use crate::oci::manifest::{ManifestInfo, OCI_INDEX};
use crate::oci::{Descriptor, Digest};
use crate::repo::proxy::MANIFEST_ACCEPT;
use crate::storage::ByteStream;

/// The most pages a listing follows (a registry that links in a circle stops here).
const MAX_PAGES: usize = 1000;

fn pull(image: &str) -> String {
    format!("repository:{image}:pull")
}

fn push(image: &str) -> String {
    format!("repository:{image}:pull,push")
}

fn refused(what: &str, a: &Small) -> ReplicateError {
    let body = String::from_utf8_lossy(&a.body);
    let body: String = body.chars().take(300).collect();
    match a.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            ReplicateError::Denied(format!("{what}: {} {body}", a.status))
        }
        _ => ReplicateError::Remote(format!("{what}: {} {body}", a.status)),
    }
}

/// The next page's path from a `Link: <...>; rel="next"` header.
fn next_page(a: &Small) -> Option<String> {
    let link = a.headers.get(header::LINK)?.to_str().ok()?;
    let start = link.find('<')? + 1;
    let end = link[start..].find('>')? + start;
    link.contains("rel=\"next\"")
        .then(|| link[start..end].to_owned())
}

impl RemoteRegistry {
    async fn get_small(
        &self,
        path: &str,
        scope: &str,
        accept: Option<&str>,
    ) -> Result<Small, ReplicateError> {
        let headers: Vec<_> = accept
            .map(|a| (header::ACCEPT, a.to_owned()))
            .into_iter()
            .collect();
        let resp = self
            .request(Method::GET, path, &headers, Bytes::new(), scope)
            .await?;
        self.read(resp).await
    }

    /// Every page of a listing, each page's `key` array.
    async fn listing(
        &self,
        first: String,
        scope: &str,
        key: &str,
    ) -> Result<Option<Vec<String>>, ReplicateError> {
        let mut out = Vec::new();
        let mut path = Some(first);
        for _ in 0..MAX_PAGES {
            let Some(p) = path.take() else { break };
            let a = self.get_small(&p, scope, None).await?;
            if a.status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            if a.status != StatusCode::OK {
                return Err(refused(&p, &a));
            }
            let v: serde_json::Value = serde_json::from_slice(&a.body)
                .map_err(|e| ReplicateError::Remote(format!("{p}: {e}")))?;
            out.extend(
                v[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_owned)),
            );
            path = next_page(&a);
        }
        Ok(Some(out))
    }

    /// Keeps the fallback referrers tag of `subject` listing `m` (a remote without the
    /// referrers API).
    async fn add_fallback_referrer(
        &self,
        image: &str,
        subject: &Digest,
        m: &Manifest,
    ) -> Result<(), ReplicateError> {
        let tag = format!("{}-{}", subject.algorithm().name(), subject.hex());
        let mut index = match self.manifest(image, &tag).await? {
            Some(existing) => serde_json::from_slice::<serde_json::Value>(&existing.bytes)
                .unwrap_or_else(|_| serde_json::json!({})),
            None => serde_json::json!({}),
        };
        let info = ManifestInfo::parse(&m.bytes, Some(&m.media_type))
            .map_err(|e| ReplicateError::Content(e.to_string()))?;
        let entry = Descriptor {
            media_type: m.media_type.clone(),
            digest: m.digest.to_string(),
            size: m.bytes.len() as i64,
            artifact_type: info.artifact_type,
            annotations: info.annotations,
            urls: None,
            platform: None,
        };
        let mut entries: Vec<Descriptor> =
            serde_json::from_value(index["manifests"].clone()).unwrap_or_default();
        if entries.iter().any(|d| d.digest == entry.digest) {
            return Ok(());
        }
        entries.push(entry);
        index["schemaVersion"] = 2.into();
        index["mediaType"] = OCI_INDEX.into();
        index["manifests"] = serde_json::to_value(entries).unwrap_or_default();
        let bytes = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
        let fallback = Manifest {
            digest: Digest::sha256_of(&bytes),
            media_type: OCI_INDEX.into(),
            bytes,
        };
        self.put_plain(image, &tag, &fallback).await.map(|_| ())
    }

    /// PUTs a manifest; whether the remote said it took its subject (`OCI-Subject`).
    async fn put_plain(
        &self,
        image: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<bool, ReplicateError> {
        let path = format!("/v2/{image}/manifests/{reference}");
        let headers = [(header::CONTENT_TYPE, m.media_type.clone())];
        let resp = self
            .request(Method::PUT, &path, &headers, m.bytes.clone(), &push(image))
            .await?;
        let a = self.read(resp).await?;
        if a.status != StatusCode::CREATED && a.status != StatusCode::OK {
            return Err(refused(&format!("PUT {path}"), &a));
        }
        Ok(a.headers.contains_key("oci-subject"))
    }
}

#[async_trait]
impl Side for RemoteRegistry {
    async fn images(&self) -> Result<Vec<String>, ReplicateError> {
        let all = self
            .listing(
                "/v2/_catalog?n=1000".into(),
                "registry:catalog:*",
                "repositories",
            )
            .await?;
        let mut all =
            all.ok_or_else(|| ReplicateError::Remote(format!("{}: no catalog", self.url())))?;
        all.sort();
        Ok(all)
    }

    async fn tags(&self, image: &str) -> Result<Vec<String>, ReplicateError> {
        let tags = self
            .listing(
                format!("/v2/{image}/tags/list?n=1000"),
                &pull(image),
                "tags",
            )
            .await?;
        Ok(tags.unwrap_or_default())
    }

    async fn manifest(
        &self,
        image: &str,
        reference: &str,
    ) -> Result<Option<Manifest>, ReplicateError> {
        let path = format!("/v2/{image}/manifests/{reference}");
        let a = self
            .get_small(&path, &pull(image), Some(MANIFEST_ACCEPT))
            .await?;
        if a.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if a.status != StatusCode::OK {
            return Err(refused(&format!("GET {path}"), &a));
        }
        let digest = Digest::sha256_of(&a.body);
        if let Ok(want) = reference.parse::<Digest>() {
            if want != digest {
                return Err(ReplicateError::Content(format!(
                    "{path}: the remote sent other bytes ({digest})"
                )));
            }
        }
        let media_type = a
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let info = ManifestInfo::parse(&a.body, media_type.as_deref())
            .map_err(|e| ReplicateError::Content(format!("{path}: {e}")))?;
        Ok(Some(Manifest {
            digest,
            media_type: info.media_type,
            bytes: a.body,
        }))
    }

    async fn manifest_digest(
        &self,
        image: &str,
        reference: &str,
    ) -> Result<Option<Digest>, ReplicateError> {
        let path = format!("/v2/{image}/manifests/{reference}");
        let headers = [(header::ACCEPT, MANIFEST_ACCEPT.to_owned())];
        let resp = self
            .request(Method::HEAD, &path, &headers, Bytes::new(), &pull(image))
            .await?;
        let a = self.read(resp).await?;
        match a.status {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => Ok(a
                .headers
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            _ => Err(refused(&format!("HEAD {path}"), &a)),
        }
    }

    async fn put_manifest(
        &self,
        image: &str,
        reference: &str,
        m: &Manifest,
    ) -> Result<(), ReplicateError> {
        let took_subject = self.put_plain(image, reference, m).await?;
        let info = ManifestInfo::parse(&m.bytes, Some(&m.media_type))
            .map_err(|e| ReplicateError::Content(e.to_string()))?;
        match info.subject {
            Some(subject) if !took_subject => self.add_fallback_referrer(image, &subject, m).await,
            _ => Ok(()),
        }
    }

    async fn delete_tag(&self, image: &str, tag: &str) -> Result<(), ReplicateError> {
        // The V2 API deletes manifests by digest: the tag's manifest goes (Distribution keeps
        // no separate tag delete everywhere).
        let Some(digest) = self.manifest_digest(image, tag).await? else {
            return Ok(());
        };
        let path = format!("/v2/{image}/manifests/{digest}");
        let resp = self
            .request(Method::DELETE, &path, &[], Bytes::new(), &push(image))
            .await?;
        let a = self.read(resp).await?;
        match a.status {
            StatusCode::ACCEPTED | StatusCode::OK | StatusCode::NOT_FOUND => Ok(()),
            _ => Err(refused(&format!("DELETE {path}"), &a)),
        }
    }

    async fn has_blob(&self, image: &str, digest: &Digest) -> Result<bool, ReplicateError> {
        let path = format!("/v2/{image}/blobs/{digest}");
        let resp = self
            .request(Method::HEAD, &path, &[], Bytes::new(), &pull(image))
            .await?;
        let a = self.read(resp).await?;
        match a.status {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            // A redirect to storage: it is there.
            s if s.is_redirection() => Ok(true),
            _ => Err(refused(&format!("HEAD {path}"), &a)),
        }
    }

    async fn read_blob(
        &self,
        image: &str,
        digest: &Digest,
    ) -> Result<(u64, ByteStream), ReplicateError> {
        let path = format!("/v2/{image}/blobs/{digest}");
        let mut resp = self
            .request(Method::GET, &path, &[], Bytes::new(), &pull(image))
            .await?;
        if resp.status().is_redirection() {
            // Storage's own URL, signed: no registry credentials go there.
            let to = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(|l| self.absolute(l))
                .ok_or_else(|| {
                    ReplicateError::Remote(format!("{path}: a redirect without Location"))
                })?;
            resp = self
                .stream(Method::GET, &to, &[], super::remote::empty(), "")
                .await?;
        }
        if resp.status() != StatusCode::OK {
            let a = self.read(resp).await?;
            return Err(refused(&format!("GET {path}"), &a));
        }
        let size = resp
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ReplicateError::Remote(format!("{path}: no Content-Length")))?;
        Ok((size, RemoteRegistry::body_stream(resp)))
    }

    async fn write_blob(
        &self,
        image: &str,
        digest: &Digest,
        size: u64,
        bytes: ByteStream,
    ) -> Result<(), ReplicateError> {
        let start = format!("/v2/{image}/blobs/uploads/");
        let resp = self
            .request(Method::POST, &start, &[], Bytes::new(), &push(image))
            .await?;
        let a = self.read(resp).await?;
        if a.status != StatusCode::ACCEPTED {
            return Err(refused(&format!("POST {start}"), &a));
        }
        let location = a
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ReplicateError::Remote(format!("POST {start}: no Location")))?;
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{}{sep}digest={digest}", self.absolute(location));
        let headers = [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
        ];
        let body = http_body_util::StreamBody::new(futures_util::StreamExt::map(bytes, |r| {
            r.map(hyper::body::Frame::data)
        }));
        let body = http_body_util::BodyExt::boxed_unsync(body);
        let resp = self
            .stream(Method::PUT, &url, &headers, body, &push(image))
            .await?;
        let a = self.read(resp).await?;
        if a.status != StatusCode::CREATED {
            return Err(refused(&format!("PUT blob {digest}"), &a));
        }
        Ok(())
    }

    async fn mount_blob(
        &self,
        image: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, ReplicateError> {
        let path = format!("/v2/{image}/blobs/uploads/?mount={digest}&from={from}");
        let scope = format!("{} repository:{from}:pull", push(image));
        let resp = self
            .request(Method::POST, &path, &[], Bytes::new(), &scope)
            .await?;
        let a = self.read(resp).await?;
        if a.status == StatusCode::ACCEPTED {
            // An upload session opened instead: not mounted; close it.
            if let Some(l) = a
                .headers
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            {
                let url = self.absolute(l);
                let _ = self
                    .request(Method::DELETE, &url, &[], Bytes::new(), &push(image))
                    .await;
            }
        }
        Ok(a.status == StatusCode::CREATED)
    }

    async fn referrers(
        &self,
        image: &str,
        digest: &Digest,
    ) -> Result<Vec<Descriptor>, ReplicateError> {
        let path = format!("/v2/{image}/referrers/{digest}");
        let a = self.get_small(&path, &pull(image), Some(OCI_INDEX)).await?;
        let index = match a.status {
            StatusCode::OK => a.body,
            StatusCode::NOT_FOUND => {
                let tag = format!("{}-{}", digest.algorithm().name(), digest.hex());
                match self.manifest(image, &tag).await? {
                    Some(m) => m.bytes,
                    None => return Ok(Vec::new()),
                }
            }
            _ => return Err(refused(&format!("GET {path}"), &a)),
        };
        let v: serde_json::Value = serde_json::from_slice(&index)
            .map_err(|e| ReplicateError::Remote(format!("{path}: {e}")))?;
        Ok(serde_json::from_value(v["manifests"].clone()).unwrap_or_default())
    }
}
