//! The main port's routing, mounts, write policies, the V1 toggle and access control.

use http::StatusCode;
use serde_json::json;

use berth_core::oci::Digest;
use berth_core::server::Port;

use crate::harness::*;

#[tokio::test]
async fn main_port_routes_by_first_component() {
    let h = harness().await;
    h.push_image("team/app", "v1", "m").await;
    let r = h
        .call_on(
            &Port::Main,
            "GET",
            "/v2/hosted/team/app/manifests/v1",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call_on(
            &Port::Main,
            "POST",
            "/v2/hosted/team/app/blobs/uploads/",
            &[],
            "",
        )
        .await;
    assert!(r
        .header("location")
        .contains("/v2/hosted/team/app/blobs/uploads/"));
    let r = h
        .call_on(&Port::Main, "GET", "/v2/nosuch/app/tags/list", &[], "")
        .await;
    assert_eq!(r.code(), "NAME_UNKNOWN");
    let r = h
        .call_on(
            &Port::Main,
            "GET",
            "/v2/other/team/app/manifests/v1",
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "repositories are separate");
    let r = h
        .call_on(&Port::Main, "GET", "/berth/health", &[], "")
        .await;
    assert_eq!(r.json()["status"], "ok");
}

#[tokio::test]
async fn cross_repository_mount() {
    let h = harness().await;
    let d = h.push_blob("src", b"shared layer").await;
    let r = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={d}&from=src"),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(
        r.header("location"),
        format!("http://registry.test:5000/v2/dst/blobs/{d}")
    );
    assert_eq!(
        h.call("HEAD", &format!("/v2/dst/blobs/{d}"), &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let unknown = Digest::sha256_of(b"not there");
    let r = h
        .call(
            "POST",
            &format!("/v2/dst/blobs/uploads/?mount={unknown}&from=src"),
            &[],
            "",
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::ACCEPTED,
        "falls back to an upload session"
    );
}

#[tokio::test]
async fn write_policies() {
    let h = harness_with("deny_redeploy", false).await;
    h.push_image("app", "v1", "one").await;
    h.push_image("app", "v1", "one").await; // the same manifest again is fine
    let config = h.push_blob("app", b"{\"seed\":\"two\"}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.to_string(), "size": 14}, "layers": []});
    let r = h
        .call(
            "PUT",
            "/v2/app/manifests/v1",
            &[("content-type", OCI_MANIFEST)],
            m.to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.code(), "DENIED");

    let ro = harness_with("read_only", false).await;
    let r = ro.call("POST", "/v2/app/blobs/uploads/", &[], "").await;
    assert_eq!(r.code(), "DENIED");
}

#[tokio::test]
async fn v1_toggle() {
    let off = harness().await;
    let r = off.call("GET", "/v1/_ping", &[], "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.json()["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("v1_enabled"));
    assert_eq!(r.header("x-docker-registry-version"), "");
    let on = harness_with("allow_redeploy", true).await;
    on.push_image("team/web", "v1", "x").await;
    on.push_image("team/db", "v1", "y").await;
    let r = on.call("GET", "/v1/_ping", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("x-docker-registry-version"), "0.6.0");
    let r = on.call("GET", "/v1/search?q=web&n=25", &[], "").await;
    assert_eq!(r.json()["num_results"], 1);
    assert_eq!(r.json()["results"][0]["name"], "team/web");
}

#[tokio::test]
async fn access_control_is_wired_as_in_the_binary() {
    let hash = berth_core::auth::password::hash("pw").unwrap();
    let h = harness_from(&format!(
        "auth:\n  users: [{{ name: alice, password_hash: \"{hash}\", roles: [dev] }}]\n  roles: [{{ name: dev, privileges: [{{ repositories: \"*\", actions: [read, write] }}] }}]\nrepositories:\n  - {{ name: hosted, kind: hosted }}\n"
    ))
    .await;
    let r = h.call("GET", "/v2/", &[], "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .starts_with("Bearer realm=\"http://registry.test:5000/v2/token\""),
        "{}",
        r.header("www-authenticate")
    );
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:pw")
    );
    let r = h
        .call("GET", "/v2/", &[("authorization", &basic)], "")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = h
        .call(
            "DELETE",
            "/v2/app/manifests/latest",
            &[("authorization", &basic)],
            "",
        )
        .await;
    assert_eq!(
        (r.status, r.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
}
