//! The four principals of the authorization matrix (`tests/tests/authz_matrix.rs`) — an admin,
//! a user who may push to one repository, a reader, anonymous — and every credential each can
//! hold: a password, an API token, a registry token from the realm, a UI session cookie; with
//! the core they are asked of (two hosted repositories, a proxy with a remote password, a
//! webhook with a secret header) and its seed.

use serde_json::json;

use crate::core::{hash_password, Core};
use crate::http::{self, basic, request, Response};
use crate::registry::oci_manifest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    Admin,
    Pusher,
    Reader,
    Anon,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cred {
    Password,
    ApiToken,
    Bearer,
    Cookie,
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    Pull,
    Push,
    Delete,
}

pub const USERS: [(Who, &str, &str); 3] = [
    (Who::Admin, "root", "root-pw-secret"),
    (Who::Pusher, "pat", "pat-pw-secret"),
    (Who::Reader, "rita", "rita-pw-secret"),
];
pub const REMOTE_SECRET: &str = "remote-pw-secret";
pub const HOOK_SECRET: &str = "hook-header-secret";

/// What `who` may do on `repo` by its roles.
pub fn may(who: Who, repo: &str, act: Act) -> bool {
    match who {
        Who::Admin => true,
        Who::Pusher => repo == "team" && act != Act::Delete,
        Who::Reader => act == Act::Pull,
        Who::Anon => false,
    }
}

/// One caller: a principal holding one credential, as the header it sends.
pub struct Caller {
    pub who: Who,
    pub cred: Cred,
    /// Per connector (`team`, `other`) for a bearer; one for the rest.
    pub headers: Vec<(String, String)>,
}

impl Caller {
    pub fn header(&self, repo: &str) -> Vec<(&str, &str)> {
        let pick = match self.cred {
            Cred::Bearer if repo == "other" => self.headers.get(1),
            _ => self.headers.first(),
        };
        pick.map(|(k, v)| vec![(k.as_str(), v.as_str())])
            .unwrap_or_default()
    }

    pub fn label(&self) -> String {
        format!("{:?}/{:?}", self.who, self.cred)
    }

    /// The registry API reads Basic and Bearer, never the UI's cookie.
    pub fn registry(&self) -> Who {
        match self.cred {
            Cred::Cookie | Cred::Nothing => Who::Anon,
            _ => self.who,
        }
    }

    /// The UI reads its cookie, never an Authorization header.
    pub fn ui(&self) -> Who {
        match self.cred {
            Cred::Cookie => self.who,
            _ => Who::Anon,
        }
    }

    /// The admin API: an admin's password (an API token only if given admin, which these are not).
    pub fn admin_api(&self) -> bool {
        self.who == Who::Admin && self.cred == Cred::Password
    }
}

pub struct Fixture {
    pub core: Core,
    pub v1: String,
    pub manifest: Vec<u8>,
    pub config_digest: String,
}

pub fn config(data: &std::path::Path, remote_pass: &std::path::Path) -> String {
    format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0, context_path: /berth }}\n\
         auth:\n  users:\n\
         \x20   - {{ name: root, password_hash: \"{}\", roles: [admins] }}\n\
         \x20   - {{ name: pat, password_hash: \"{}\", roles: [team-pushers] }}\n\
         \x20   - {{ name: rita, password_hash: \"{}\", roles: [readers] }}\n\
         \x20 roles:\n\
         \x20   - {{ name: admins, privileges: [{{ repositories: \"*\", actions: [admin] }}] }}\n\
         \x20   - {{ name: team-pushers, privileges: [{{ repositories: team, actions: [read, write] }}] }}\n\
         \x20   - {{ name: readers, privileges: [{{ repositories: \"*\", actions: [read] }}] }}\n\
         repositories:\n\
         \x20 - {{ name: team, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: other, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n\
         \x20 - {{ name: hub, kind: proxy, remote: {{ url: \"http://127.0.0.1:9\", username: hubuser, password_file: {} }} }}\n\
         notifications:\n  allow_private_targets: true\n  endpoints:\n\
         \x20   - {{ name: hooks, url: \"http://127.0.0.1:9/events\", headers: {{ Authorization: \"Bearer {HOOK_SECRET}\" }} }}\n",
        data.display(),
        hash_password(USERS[0].2),
        hash_password(USERS[1].2),
        hash_password(USERS[2].2),
        remote_pass.display(),
    )
}

pub fn root() -> String {
    basic("root", USERS[0].2)
}

/// `app:v1` and `app:scratch` (the same manifest) in `team` and `other`, pushed by root.
pub fn seed(core: &Core) -> (String, Vec<u8>, String) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = vec![7u8; 2048];
    let manifest = oci_manifest(&config, &[&layer]);
    for repo in ["team", "other"] {
        let addr = core.connector(repo);
        for b in [&config, &layer] {
            let r = crate::registry::push_blob_as(addr, "app", "", &root(), b);
            assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        }
        for tag in ["v1", "scratch"] {
            put_manifest(addr, &root(), tag, &manifest);
        }
    }
    (http::digest(&manifest), manifest, http::digest(&config))
}

pub fn put_manifest(addr: &str, auth: &str, tag: &str, manifest: &[u8]) -> Response {
    let r = request(
        addr,
        "PUT",
        &format!("/v2/app/manifests/{tag}"),
        &[
            ("Authorization", auth),
            ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
        ],
        manifest,
    )
    .unwrap();
    assert!(r.status < 500, "{}", r.status);
    r
}

/// A UI session cookie for `user`.
pub fn session(core: &Core, user: &str, password: &str) -> String {
    let body = format!("user={user}&password={password}");
    let r = request(
        &core.main,
        "POST",
        "/berth/ui/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 303, "{user} signs in");
    let c = r.header("set-cookie").unwrap();
    c.split(';').next().unwrap().to_owned()
}

/// A registry token from `addr`'s realm for `scope`, asked with `auth` (none: anonymous).
pub fn realm(addr: &str, auth: Option<&str>, scopes: &[&str]) -> (u16, String) {
    let q: Vec<String> = scopes.iter().map(|s| format!("scope={s}")).collect();
    let path = format!("/v2/token?service=berth&{}", q.join("&"));
    let headers: Vec<(&str, &str)> = auth.map(|a| vec![("Authorization", a)]).unwrap_or_default();
    let r = request(addr, "GET", &path, &headers, b"").unwrap();
    let t = r.json()["token"].as_str().unwrap_or("").to_owned();
    (r.status, t)
}

pub fn api_token(core: &Core, user: &str) -> String {
    let r = request(
        &core.main,
        "POST",
        &format!("/berth/api/v1/users/{user}/tokens"),
        &[
            ("Authorization", &root()),
            ("Content-Type", "application/json"),
        ],
        json!({ "name": "matrix" }).to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    r.json()["token"].as_str().unwrap().to_owned()
}

pub fn callers(core: &Core) -> Vec<Caller> {
    let all = "repository:app:pull,push,delete";
    let mut out = Vec::new();
    for (who, user, pw) in USERS {
        let auth = basic(user, pw);
        let h = |k: &str, v: String| vec![(k.to_owned(), v)];
        out.push(Caller {
            who,
            cred: Cred::Password,
            headers: h("Authorization", auth.clone()),
        });
        out.push(Caller {
            who,
            cred: Cred::ApiToken,
            headers: h("Authorization", basic(user, &api_token(core, user))),
        });
        let bearers = ["team", "other"]
            .iter()
            .map(|repo| {
                let (status, t) = realm(core.connector(repo), Some(&auth), &[all]);
                assert_eq!(status, 200, "{user} at the realm of {repo}");
                ("Authorization".to_owned(), format!("Bearer {t}"))
            })
            .collect();
        out.push(Caller {
            who,
            cred: Cred::Bearer,
            headers: bearers,
        });
        out.push(Caller {
            who,
            cred: Cred::Cookie,
            headers: h("Cookie", session(core, user, pw)),
        });
    }
    out.push(Caller {
        who: Who::Anon,
        cred: Cred::Nothing,
        headers: Vec::new(),
    });
    let anon_bearers: Vec<(String, String)> = ["team", "other"]
        .iter()
        .filter_map(|repo| {
            let (status, t) = realm(core.connector(repo), None, &[all]);
            (status == 200).then(|| ("Authorization".to_owned(), format!("Bearer {t}")))
        })
        .collect();
    if anon_bearers.len() == 2 {
        out.push(Caller {
            who: Who::Anon,
            cred: Cred::Bearer,
            headers: anon_bearers,
        });
    }
    out
}
