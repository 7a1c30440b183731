//! The configuration file as written (parsed by `berth_config::Source`, the only caller of
//! `serde_yaml`).
//!
//! Every struct denies unknown keys so that a typo is an error, not a silently ignored setting.
//! Each field's doc comment is the manual; `deploy/core.yaml` repeats it with examples.

use std::net::SocketAddr;

use serde::Deserialize;

use berth_config::{ByteSize, Duration};

use crate::repo::WritePolicy;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where content lives.
    pub storage: RawStorage,
    /// The main port.
    pub main: RawMain,
    /// Addresses of reverse proxies (the edge) whose `X-Forwarded-*` headers are trusted.
    /// Addresses or CIDR ranges, e.g. `127.0.0.1` or `172.16.0.0/12`. Absent: loopback
    /// (an edge on the same host); `[]`: nobody.
    pub trusted_proxies: Option<Vec<String>>,
    /// The repositories this core serves.
    #[serde(default)]
    pub repositories: Vec<RawRepository>,
    /// Protections against slow, abandoned or abusive clients.
    #[serde(default)]
    pub limits: RawLimits,
    /// Users, roles and tokens. Without it anyone may push and pull (development only).
    pub auth: Option<RawAuth>,
    /// Garbage collection, undo and tag history.
    #[serde(default)]
    pub gc: RawGc,
    /// Prometheus metrics and health probes on a listener of their own.
    pub metrics: Option<RawMetrics>,
    /// Push, pull and delete events POSTed to webhooks (Distribution's envelope).
    #[serde(default)]
    pub notifications: RawNotifications,
    /// Rules copying images to and from other V2 registries.
    #[serde(default)]
    pub replication: Vec<RawReplication>,
}

/// One `replication` entry: see `deploy/core.yaml` for every key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplication {
    pub name: String,
    pub direction: crate::replicate::Direction,
    /// Left out only where exactly one hosted repository exists.
    pub repository: Option<String>,
    pub remote: RawReplicationRemote,
    /// Default `*`.
    pub images: Option<String>,
    /// Default `*`; `tags_regex` instead where a glob is not enough.
    pub tags: Option<String>,
    pub tags_regex: Option<String>,
    pub destination: Option<String>,
    #[serde(default)]
    pub trigger: RawTrigger,
    #[serde(default)]
    pub delete: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplicationRemote {
    pub url: String,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub token_file: Option<String>,
    pub ca_file: Option<String>,
    /// Default `30s`.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    #[serde(default)]
    pub on_push: bool,
    pub schedule: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotifications {
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
    /// Endpoints may be on loopback, private or link-local addresses (see `events::target`).
    #[serde(default)]
    pub allow_private_targets: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    /// For logs and metrics.
    pub name: String,
    /// `http://` or `https://` URL the envelopes are POSTed to.
    pub url: String,
    /// Extra request headers, e.g. `Authorization`.
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Per delivery attempt (default `5s`).
    pub timeout: Option<Duration>,
    /// First wait after a failed delivery (default `1s`); doubles up to `max_backoff`.
    pub backoff: Option<Duration>,
    /// Longest wait between attempts (default `5m`).
    pub max_backoff: Option<Duration>,
    /// Events held for this endpoint while it is down (default 10000); beyond it the oldest go.
    pub queue: Option<usize>,
    /// Trust for the endpoint's HTTPS, beside the system roots.
    pub ca_file: Option<String>,
    /// Events not to send.
    #[serde(default)]
    pub ignore: RawIgnore,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIgnore {
    /// `push`, `pull`, `mount`, `delete`.
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub media_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// Where `/metrics`, `/healthz` and `/readyz` are served, e.g. `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGc {
    /// How often a collection runs (default `24h`); `0s`: only on demand (`berth-core gc`,
    /// `POST <context>/api/v1/gc`).
    pub interval: Option<Duration>,
    /// Content pushed or linked this recently is never collected (default `1h`): the longest a
    /// push may take between uploading its blobs and putting its manifest.
    pub grace: Option<Duration>,
    /// Deleted tags and manifests can be restored for this long (default `7d`).
    pub undo_window: Option<Duration>,
    /// Tag history (what each tag pointed at, when, by whom) is kept this long (default `90d`).
    pub history_retention: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub roles: Vec<RawRole>,
    /// Lifetime of bearer tokens (default 5m).
    pub token_ttl: Option<Duration>,
    /// A file holding the key registry tokens are signed with (at least 32 bytes), the same on
    /// every core; without it the key is kept in the metadata store.
    pub token_key_file: Option<String>,
    /// Failed logins per client address (whatever user names it tries) before each further
    /// attempt from it waits, 1 s doubling up to `login_max_delay` (default 10).
    pub login_attempts: Option<u32>,
    /// Failed logins per user name across all addresses before the same back-off (default 100).
    pub login_attempts_per_user: Option<u32>,
    /// Failures are forgotten this long after the last one (default `15m`).
    pub login_window: Option<Duration>,
    /// The longest wait between attempts once backing off (default `60s`).
    pub login_max_delay: Option<Duration>,
    /// An LDAP directory whose users log in beside the local ones.
    pub ldap: Option<RawLdap>,
    /// OpenID Connect: the UI's single sign-on, CI jobs' ID tokens as passwords.
    pub oidc: Option<RawOidc>,
}

/// `auth.oidc`: see `deploy/core.yaml` for every key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    /// The provider people sign in with (with `client_id`); none: workload tokens only.
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret_file: Option<String>,
    /// Default `[openid, profile]`.
    pub scopes: Option<Vec<String>>,
    /// Default `preferred_username`.
    pub username_claim: Option<String>,
    /// Default `groups`.
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub workload: Vec<RawWorkload>,
    pub ca_file: Option<String>,
    /// Default `5s`.
    pub timeout: Option<Duration>,
}

/// One `auth.oidc.workload` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub issuer: String,
    pub audience: String,
    #[serde(default)]
    pub claims: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `auth.ldap`: see `deploy/core.yaml` for every key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLdap {
    pub url: String,
    #[serde(default)]
    pub start_tls: bool,
    pub bind_dn: Option<String>,
    pub bind_password_file: Option<String>,
    pub user_base: String,
    /// Default `(uid={user})`.
    pub user_filter: Option<String>,
    pub group_base: Option<String>,
    /// Default `(member={dn})`.
    pub group_filter: Option<String>,
    #[serde(default)]
    pub group_roles: std::collections::BTreeMap<String, Vec<String>>,
    pub ca_file: Option<String>,
    /// Default `5s`.
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    /// An argon2 PHC string from `berth-core hash-password`.
    pub password_hash: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRole {
    pub name: String,
    #[serde(default)]
    pub privileges: Vec<RawPrivilege>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivilege {
    /// Repository name pattern; `*` matches any run of characters.
    pub repositories: String,
    /// `read`, `write`, `delete`, `admin`.
    pub actions: Vec<crate::auth::Action>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// How long a client may take to send its request headers (default 30s).
    pub header_read_timeout: Option<Duration>,
    /// How long a request body may stall without a byte arriving (default 5m).
    pub body_idle_timeout: Option<Duration>,
    /// Open upload sessions per repository (default 1000). At the cap, the oldest empty
    /// session gives way, else the least recently active idle one; only when all are active
    /// is a new one refused (429).
    pub max_upload_sessions: Option<usize>,
    /// Each client's share of that cap (default a tenth of it); a client at its share evicts
    /// its own empty or idle sessions, never others'.
    pub max_upload_sessions_per_client: Option<usize>,
    /// A session with no bytes for this long counts as idle and may be evicted (default 2m).
    pub upload_idle_after: Option<Duration>,
    /// Connections served at once per listener (default 10000); beyond it new connections wait
    /// in the kernel's backlog until one closes.
    pub max_connections: Option<usize>,
    /// Upload sessions idle this long are removed (default 24h).
    pub upload_expiry: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Filesystem root of the blobs and, by default, of the SQLite metadata file; relative to
    /// the config file's directory.
    pub root: String,
    /// Where the metadata lives; absent: SQLite in `<root>/metadata.db`.
    pub metadata: Option<RawMetadata>,
    /// Where blob bytes live; absent: under `root`.
    pub blobs: Option<RawBlobs>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBlobs {
    /// An S3-compatible bucket (AWS, Garage, Ceph RGW, ...), shared by several cores.
    pub s3: Option<RawS3>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawS3 {
    pub bucket: String,
    /// `https://s3.internal:9000`; absent: AWS's endpoint for the region.
    pub endpoint: Option<String>,
    /// Default `us-east-1`; must equal the server's region (Garage: its `s3_region`).
    pub region: Option<String>,
    /// A key prefix, so one bucket can hold several registries.
    pub prefix: Option<String>,
    /// Absent: credentials from the environment (`AWS_ACCESS_KEY_ID`, ...) or the instance.
    pub access_key_id: Option<String>,
    /// File holding the secret key (trailing newline ignored).
    pub secret_access_key_file: Option<String>,
    /// Environment variable holding the secret key.
    pub secret_access_key_env: Option<String>,
    /// `false` for servers that ignore `If-None-Match` (Garage): say so rather than trust it.
    pub conditional_put: Option<bool>,
    /// PEM file with the CA(s) of an endpoint behind a private CA, trusted beside the system's.
    pub ca_file: Option<String>,
    /// Answer blob `GET`s with a 307 to a presigned URL of the bucket (default `false`).
    pub redirect: Option<bool>,
    /// Sign each request's payload hash (SigV4). Default: over `http://` yes, over `https://`
    /// no (TLS protects the bytes; each blob's digest is verified anyway).
    pub sign_payload: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetadata {
    /// Shared metadata in PostgreSQL (several cores on one database).
    pub postgres: Option<RawPostgres>,
    /// The SQLite file, if not `<root>/metadata.db`.
    pub sqlite: Option<RawSqlite>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    /// `postgres://user@host:5432/database`; no password here (it would be logged and shown).
    pub url: String,
    /// File holding the password (trailing newline ignored).
    pub password_file: Option<String>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSqlite {
    pub path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMain {
    /// Address of the main port, e.g. `127.0.0.1:8081`.
    pub listen: SocketAddr,
    /// Optional prefix for the admin API and UI, e.g. `/berth`. Never applies to `/v2/`.
    pub context_path: Option<String>,
}

/// Repository kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepoKindRaw {
    /// Push and pull, stored locally.
    Hosted,
    /// Pull-through cache of a remote registry.
    Proxy,
    /// One read (and optionally write) endpoint over an ordered list of members.
    Group,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemote {
    /// Base URL of any V2 registry, e.g. `https://registry-1.docker.io`.
    pub url: String,
    /// Remote credentials (basic, or for the remote's bearer-token realm).
    pub username: Option<String>,
    /// File holding the remote password (kept out of the config file).
    pub password_file: Option<String>,
    /// Extra CA certificate (PEM) to trust for this remote, besides the system's.
    pub ca_file: Option<String>,
    /// TCP and TLS connection set-up (default `10s`).
    pub connect_timeout: Option<Duration>,
    /// From a request to the response headers (default `30s`).
    pub response_timeout: Option<Duration>,
    /// Longest pause inside a response body (default `60s`).
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepository {
    /// Unique name; one path component of the OCI name grammar.
    pub name: String,
    /// `hosted`.
    pub kind: RepoKindRaw,
    /// The repository's own plain-HTTP port.
    pub connector: Option<RawConnector>,
    /// Serve the V1 `_ping`/`search` endpoints.
    #[serde(default)]
    pub v1_enabled: bool,
    /// `allow_redeploy` (default), `deny_redeploy` or `read_only`.
    #[serde(default)]
    pub write_policy: WritePolicy,
    /// proxy: the remote registry.
    pub remote: Option<RawRemote>,
    /// proxy: how long a remote tag list (and V1 search answer) is reused, e.g. `24h`.
    /// Manifests by digest and blobs never expire: they are immutable.
    pub content_max_age: Option<Duration>,
    /// proxy: how long a tag is trusted before it is revalidated with a HEAD, e.g. `30m`.
    pub metadata_max_age: Option<Duration>,
    /// proxy: how long "not found" answers from the remote are remembered, e.g. `1m`.
    pub negative_cache_ttl: Option<Duration>,
    /// proxy: consecutive remote failures before the remote is blocked (default 5).
    pub auto_block_after: Option<u32>,
    /// proxy: how long the remote stays blocked, e.g. `1m`.
    pub auto_block_for: Option<Duration>,
    /// proxy: blob fetches from the remote at once (default 16); more wait their turn.
    pub max_concurrent_fetches: Option<usize>,
    /// group: member repositories, in lookup order.
    pub members: Option<Vec<String>>,
    /// group: the hosted member that receives pushes made through the group.
    pub writable_member: Option<String>,
    /// group: mirror mode for Kubernetes nodes. containerd and CRI-O name the upstream a pull
    /// is for in the `ns` query parameter; a request with `?ns=docker.io` is served by the
    /// repository mapped to `docker.io` here, e.g. `{ docker.io: docker-hub, ghcr.io: ghcr }`.
    /// An `ns` not listed is a 404 (the node then falls back to the upstream itself).
    pub mirrors: Option<std::collections::BTreeMap<String, String>>,
    /// With an `auth` section: let unauthenticated clients pull (never push).
    #[serde(default)]
    pub anonymous_pull: bool,
    /// hosted: tags matching any of these regexes can never be moved or deleted, e.g.
    /// `["^v[0-9]"]` (cleanup policies leave them alone too).
    #[serde(default)]
    pub immutable_tags: Vec<String>,
    /// hosted: the most the repository may hold, e.g. `50GiB`; a push beyond it is refused
    /// with DENIED.
    pub quota: Option<ByteSize>,
    /// Cleanup policies, run before each scheduled collection (see `gc.interval`).
    #[serde(default)]
    pub cleanup: Vec<RawPolicy>,
    /// proxy: evict cached images nobody pulled for `max_age`, and the least recently pulled
    /// beyond `max_size`.
    pub cache: Option<RawCache>,
}

/// One cleanup policy. A tag goes when it matches `images`/`tags`, not `exclude_tags`, is not
/// among the `keep_last` most recently pushed matching tags of its image, and meets every age
/// criterion given. A manifest left without tags goes with its last tag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    /// For reports and tag history (`policy <name>`).
    pub name: String,
    /// Regex on the image name (default: every image).
    pub images: Option<String>,
    /// Regex on the tag (default: every tag).
    pub tags: Option<String>,
    /// Regex of tags never removed, e.g. `^(latest|v.*)$`.
    pub exclude_tags: Option<String>,
    /// Keep this many of the most recently pushed matching tags per image.
    pub keep_last: Option<usize>,
    /// Only tags pushed more than this long ago, e.g. `30d`.
    pub older_than: Option<Duration>,
    /// Only what nobody pulled for this long (never pulled: counted from the push), e.g. `90d`.
    pub not_pulled_for: Option<Duration>,
    /// Also remove untagged manifests (not an index's children, not referrers of a kept
    /// image), subject to the age criteria.
    #[serde(default)]
    pub untagged: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub max_age: Option<Duration>,
    pub max_size: Option<ByteSize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// Plain-HTTP address, e.g. `127.0.0.1:8082` (behind the edge).
    pub http: Option<SocketAddr>,
    /// Direct HTTPS, for running the core without the edge.
    pub https: Option<RawHttps>,
    /// How clients reach this port, e.g. `https://registry.example.com:5443` (the edge's
    /// listener): the web UI's `docker pull` lines use it. Absent: the UI's own host name with
    /// this connector's port.
    pub external_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttps {
    pub listen: SocketAddr,
    /// PEM certificate chain.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

impl std::fmt::Display for RepoKindRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RepoKindRaw::Hosted => "hosted",
            RepoKindRaw::Proxy => "proxy",
            RepoKindRaw::Group => "group",
        })
    }
}
