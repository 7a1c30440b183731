//! Group behaviour in process: referrers merged across members, catalog union, no writable
//! member means pushes are denied.

// Test helpers panic on purpose when something is off.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bytes::Bytes;
use serde_json::json;

use berth_core::oci::{Digest, ImageName, Reference};
use berth_core::repo::{GroupRepository, HostedRepository, Repository, WritePolicy};
use berth_core::storage::{ByteStream, Stores};

const OCI: &str = "application/vnd.oci.image.manifest.v1+json";

async fn push_blob(r: &dyn Repository, image: &ImageName, data: &'static [u8]) -> Digest {
    let d = Digest::sha256_of(data);
    let id = r.upload_start(image, "test").await.unwrap();
    let body: ByteStream = Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]));
    r.upload_append(image, &id, Some(0), body).await.unwrap();
    r.upload_finish(image, &id, &d).await.unwrap();
    d
}

async fn push_artifact(
    r: &dyn Repository,
    image: &ImageName,
    artifact_type: &str,
    subject: &Digest,
) -> Digest {
    let empty = push_blob(r, image, b"{}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI, "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty.to_string(), "size": 2},
        "layers": [], "subject": {"mediaType": OCI, "digest": subject.to_string(), "size": 10}});
    let bytes = Bytes::from(m.to_string());
    let d = Digest::sha256_of(&bytes);
    r.manifest_put(
        image,
        &Reference::Digest(d.clone()),
        Some(OCI),
        bytes,
        "tester",
    )
    .await
    .unwrap();
    d
}

#[tokio::test]
async fn referrers_and_catalog_are_merged_and_writes_need_a_writable_member() {
    let storage = Stores::memory().await.unwrap();
    let a: Arc<dyn Repository> = Arc::new(HostedRepository::new(
        "a".parse().unwrap(),
        storage.clone(),
        WritePolicy::AllowRedeploy,
    ));
    let b: Arc<dyn Repository> = Arc::new(HostedRepository::new(
        "b".parse().unwrap(),
        storage.clone(),
        WritePolicy::AllowRedeploy,
    ));
    let image: ImageName = "team/app".parse().unwrap();
    let subject = Digest::sha256_of(b"the subject");
    let sbom = push_artifact(a.as_ref(), &image, "application/vnd.example.sbom", &subject).await;
    let sig = push_artifact(b.as_ref(), &image, "application/vnd.example.sig", &subject).await;
    let other: ImageName = "only/in-b".parse().unwrap();
    push_artifact(b.as_ref(), &other, "application/vnd.example.sig", &subject).await;

    let group = GroupRepository::new("g".parse().unwrap(), vec![a.clone(), b.clone()], None);
    let mut found: Vec<String> = group
        .referrers(&image, &subject)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.digest)
        .collect();
    found.sort();
    let mut want = vec![sbom.to_string(), sig.to_string()];
    want.sort();
    assert_eq!(found, want);

    let images: Vec<String> = group
        .images(&berth_core::repo::Page::all())
        .await
        .unwrap()
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(images, ["only/in-b", "team/app"]);

    let e = group.upload_start(&image, "test").await.unwrap_err();
    assert!(e.to_string().contains("no writable member"), "{e}");
}
