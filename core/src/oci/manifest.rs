//! What the registry needs to know about a manifest: its media type, the blobs and manifests it
//! references, its `subject` and `artifactType`. The bytes themselves are stored untouched; this
//! module only reads them.
//!
//! The structs are deliberately lenient (unknown fields ignored) because registries must accept
//! any artifact; they are strict only where the spec is: `schemaVersion` 2, well-formed digests,
//! and a `mediaType` in the body that agrees with the one the client declared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
const OCI_NONDISTRIBUTABLE_PREFIX: &str = "application/vnd.oci.image.layer.nondistributable";

/// Largest manifest accepted; larger ones are answered with 413 (the spec's SHOULD is 4 MiB).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

/// A content descriptor as it appears in manifests and in the referrers index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

/// Why manifest bytes were refused (all map to `MANIFEST_INVALID`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("schemaVersion must be 2")]
    SchemaVersion,
    #[error("Docker schema 1 manifests are not supported; push with a current client")]
    Schema1,
    #[error("Content-Type {declared:?} does not match the manifest's mediaType {body:?}")]
    MediaTypeMismatch { declared: String, body: String },
    #[error("cannot tell the manifest's media type: send Content-Type or a mediaType field")]
    UnknownMediaType,
    #[error("descriptor digest {0:?} is malformed")]
    BadDigest(String),
    #[error("descriptor for {0} has a negative size")]
    BadSize(String),
    #[error("media type {0:?} is not a manifest type this registry stores (OCI image manifest or index, Docker manifest v2 or manifest list); put an artifact's own type in artifactType")]
    UnsupportedMediaType(String),
    #[error("a {kind} needs a {field:?} field")]
    MissingField {
        kind: &'static str,
        field: &'static str,
    },
    #[error("a {kind} has no {field:?} field")]
    UnexpectedField {
        kind: &'static str,
        field: &'static str,
    },
}

/// A content reference in a manifest: what must exist, and how big the manifest says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub digest: Digest,
    pub size: u64,
}

/// What a manifest says, as far as the registry cares.
#[derive(Debug, Clone)]
pub struct ManifestInfo {
    /// The media type it is stored and served with.
    pub media_type: String,
    /// Blobs that must exist in the repository with these sizes (config and layers, foreign
    /// layers excluded).
    pub blobs: Vec<Ref>,
    /// Manifests an index points to.
    pub children: Vec<Ref>,
    /// The `subject` digest, for the referrers API.
    pub subject: Option<Digest>,
    /// `artifactType`, or the config's media type, as the referrers API reports it.
    pub artifact_type: Option<String>,
    pub annotations: Option<BTreeMap<String, String>>,
}

impl ManifestInfo {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// Parses `bytes`, reconciling the declared `Content-Type` with the body's `mediaType`.
    pub fn parse(bytes: &[u8], declared: Option<&str>) -> Result<ManifestInfo, ManifestError> {
        let declared = declared
            .map(|d| d.split(';').next().unwrap_or(d).trim())
            .filter(|d| !d.is_empty() && *d != "application/json" && *d != "*/*");
        if matches!(declared, Some(DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)) {
            return Err(ManifestError::Schema1);
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version == Some(1) {
            return Err(ManifestError::Schema1);
        }
        if raw.schema_version != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let media_type = match (declared, raw.media_type.as_deref()) {
            (Some(d), Some(b)) if d != b => {
                return Err(ManifestError::MediaTypeMismatch {
                    declared: d.to_owned(),
                    body: b.to_owned(),
                })
            }
            (Some(d), _) => d.to_owned(),
            (None, Some(b)) => b.to_owned(),
            (None, None) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
            (None, None) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
            (None, None) => return Err(ManifestError::UnknownMediaType),
        };
        check_shape(&media_type, &raw)?;

        let mut blobs = Vec::new();
        if let Some(config) = &raw.config {
            blobs.push(descriptor_digest(config)?);
        }
        for layer in raw.layers.iter().flatten() {
            let digest = descriptor_digest(layer)?;
            let foreign = layer.media_type == DOCKER_FOREIGN_LAYER
                || layer.media_type.starts_with(OCI_NONDISTRIBUTABLE_PREFIX)
                || layer.urls.as_ref().is_some_and(|u| !u.is_empty());
            if !foreign {
                blobs.push(digest);
            }
        }
        let children = raw
            .manifests
            .iter()
            .flatten()
            .map(descriptor_digest)
            .collect::<Result<Vec<_>, _>>()?;
        let subject = raw
            .subject
            .as_ref()
            .map(descriptor_digest)
            .transpose()?
            .map(|r| r.digest);
        let artifact_type = raw
            .artifact_type
            .or_else(|| raw.config.as_ref().map(|c| c.media_type.clone()));
        Ok(ManifestInfo {
            media_type,
            blobs,
            children,
            subject,
            artifact_type,
            annotations: raw.annotations,
        })
    }
}

/// The fields each manifest type must (and must not) have. A type outside the four is refused
/// rather than stored: nothing could negotiate it back out (audit: accepted, then 404 on GET).
fn check_shape(media_type: &str, raw: &RawManifest) -> Result<(), ManifestError> {
    let (kind, image) = match media_type {
        OCI_MANIFEST => ("image manifest", true),
        DOCKER_MANIFEST => ("Docker manifest", true),
        OCI_INDEX => ("image index", false),
        DOCKER_LIST => ("Docker manifest list", false),
        other => return Err(ManifestError::UnsupportedMediaType(other.to_owned())),
    };
    let missing = |field| Err(ManifestError::MissingField { kind, field });
    let unexpected = |field| Err(ManifestError::UnexpectedField { kind, field });
    if image {
        if raw.config.is_none() {
            return missing("config");
        }
        if raw.layers.is_none() {
            return missing("layers");
        }
        if raw.manifests.is_some() {
            return unexpected("manifests");
        }
    } else {
        if raw.manifests.is_none() {
            return missing("manifests");
        }
        if raw.config.is_some() {
            return unexpected("config");
        }
        if raw.layers.is_some() {
            return unexpected("layers");
        }
    }
    Ok(())
}

fn descriptor_digest(d: &Descriptor) -> Result<Ref, ManifestError> {
    let size = u64::try_from(d.size).map_err(|_| ManifestError::BadSize(d.digest.clone()))?;
    let digest = d
        .digest
        .parse()
        .map_err(|_| ManifestError::BadDigest(d.digest.clone()))?;
    Ok(Ref { digest, size })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn image_manifest_lists_config_and_layers() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest('a'), "size": 2},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest('b'), "size": 3},
                {"mediaType": DOCKER_FOREIGN_LAYER, "digest": digest('c'), "size": 3, "urls": ["https://x"]}
            ],
            "subject": {"mediaType": OCI_MANIFEST, "digest": digest('d'), "size": 9}
        });
        let info = ManifestInfo::parse(m.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(info.blobs.len(), 2, "foreign layer is not required");
        assert_eq!(info.subject.unwrap().to_string(), digest('d'));
        assert_eq!(info.blobs[1].size, 3);
        assert_eq!(
            info.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn index_with_attestations() {
        let m = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": digest('a'), "size": 2, "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": OCI_MANIFEST, "digest": digest('b'), "size": 2, "platform": {"architecture": "unknown", "os": "unknown"},
                 "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
            ]
        });
        let info = ManifestInfo::parse(m.to_string().as_bytes(), None).unwrap();
        assert!(info.is_index());
        assert_eq!(info.children.len(), 2);
    }

    #[test]
    fn refuses_bad_manifests() {
        assert!(matches!(
            ManifestInfo::parse(b"{", None),
            Err(ManifestError::Json(_))
        ));
        assert_eq!(
            ManifestInfo::parse(br#"{"schemaVersion":1}"#, None).unwrap_err(),
            ManifestError::Schema1
        );
        let mismatch = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(matches!(
            ManifestInfo::parse(mismatch.as_bytes(), Some(OCI_MANIFEST)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
        let bad_digest = r#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"sha256:zz","size":1},"layers":[]}"#;
        assert!(matches!(
            ManifestInfo::parse(bad_digest.as_bytes(), None),
            Err(ManifestError::BadDigest(_))
        ));
    }

    #[test]
    fn refuses_unknown_types_and_missing_fields() {
        let unknown = r#"{"schemaVersion":2,"mediaType":"application/vnd.example.thing","config":{"mediaType":"x","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","size":1},"layers":[]}"#;
        assert!(matches!(
            ManifestInfo::parse(unknown.as_bytes(), Some("application/vnd.example.thing")),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
        let no_config =
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","layers":[]}}"#);
        assert_eq!(
            ManifestInfo::parse(no_config.as_bytes(), None).unwrap_err(),
            ManifestError::MissingField {
                kind: "image manifest",
                field: "config"
            }
        );
        let no_layers = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":1}}}}"#,
            digest('a')
        );
        assert!(matches!(
            ManifestInfo::parse(no_layers.as_bytes(), None),
            Err(ManifestError::MissingField {
                field: "layers",
                ..
            })
        ));
        let no_manifests = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}"}}"#);
        assert!(matches!(
            ManifestInfo::parse(no_manifests.as_bytes(), None),
            Err(ManifestError::MissingField {
                field: "manifests",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = ManifestInfo::parse(&bytes, None);
        }
    }
}
