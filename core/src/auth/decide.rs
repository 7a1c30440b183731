//! One decision, one place: whether an identity may do an action on a repository — by its
//! roles, narrowed by an API token's privileges, and, for a registry token, also by the grants
//! it holds. The API asks here for every route; nothing else matches grants or privileges.

use super::directory::Directory;
use super::{glob, token, Action, Auth, Grant, Identity};
use crate::oci::RepoName;

impl Auth {
    /// Whether `who` may do `action` on `repo`, by the directory in force now.
    pub fn can(&self, who: &Identity, repo: &RepoName, action: Action) -> bool {
        let public = action == Action::Read && self.anonymous_may_pull(repo);
        match who {
            Identity::Anonymous => public,
            Identity::User(name) => public || user_can(&self.dir(), name, repo, action),
            Identity::External { roles, .. } => {
                public || roles_can(&self.dir(), roles, repo, action)
            }
            Identity::Token { user, id } => {
                if public {
                    return true;
                }
                let dir = self.dir();
                // Revoked or expired since the login: nothing.
                let Some(t) = dir.live_token(id, user, token::now() as i64) else {
                    return false;
                };
                t.allows(repo.as_str(), action) && user_can(&dir, user, repo, action)
            }
        }
    }

    /// Whether a request may do `action`: the caller's privileges allow it on every repository
    /// in `repos` (the one that serves or stores the request, and for a mirror read the group
    /// too), and — when it came with a registry token — the token grants the action on
    /// `scope`, the `repository/image` name it was issued for.
    pub fn permits(
        &self,
        who: &Identity,
        grants: Option<&[Grant]>,
        scope: &str,
        repos: &[&RepoName],
        action: Action,
    ) -> bool {
        let granted = grants.is_none_or(|gs| {
            gs.iter()
                .any(|g| g.name == scope && g.actions.iter().any(|a| a == action.scope_name()))
        });
        granted && repos.iter().all(|r| self.can(who, r, action))
    }

    /// Whether `who` administers every repository (the admin API): a user with the admin
    /// privilege on `*`, signed in with the password, or with an API token that was itself
    /// given that privilege.
    pub fn is_admin(&self, who: &Identity) -> bool {
        let dir = self.dir();
        let admin = |name: &str| {
            dir.privileges(name)
                .any(|p| p.pattern == "*" && p.actions.contains(&Action::Admin))
        };
        match who {
            Identity::Anonymous => false,
            Identity::User(name) => admin(name),
            Identity::External { roles, .. } => dir
                .role_privileges(roles)
                .any(|p| p.pattern == "*" && p.actions.contains(&Action::Admin)),
            Identity::Token { user, id } => {
                admin(user)
                    && dir
                        .live_token(id, user, token::now() as i64)
                        .is_some_and(|t| t.grants_admin())
            }
        }
    }
}

fn user_can(dir: &Directory, user: &str, repo: &RepoName, action: Action) -> bool {
    dir.privileges(user).any(|p| allows(p, repo, action))
}

/// What roles given by a directory allow, by the roles' privileges in force now (a role since
/// removed from the config gives nothing).
fn roles_can(dir: &Directory, roles: &[String], repo: &RepoName, action: Action) -> bool {
    dir.role_privileges(roles).any(|p| allows(p, repo, action))
}

fn allows(p: &super::Privilege, repo: &RepoName, action: Action) -> bool {
    glob(&p.pattern, repo.as_str())
        && (p.actions.contains(&action) || p.actions.contains(&Action::Admin))
}
