//! Single sign-on for the web UI: the authorization-code flow with PKCE, a state parameter
//! against cross-site requests and a nonce bound into the ID token.
//!
//! What the browser must bring back (state, nonce, PKCE verifier) travels in a short-lived
//! cookie of its own rather than in this core's memory, so the provider may send the browser
//! back to any core behind the edge. The cookie is worthless elsewhere: the state must equal
//! the one the provider returns, and the verifier only redeems a code issued for this browser's
//! challenge.

use std::sync::Arc;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
};

use super::issuer::{chain, Issuer};
use super::{claim_strings, payload, refused, OidcError};
use crate::auth::settings::{OidcPeople, Secret};

/// A sign-on begun: where to send the browser, and the cookie value to set meanwhile.
pub struct Begun {
    pub url: String,
    pub pending: String,
}

/// Who signed in, and the roles their groups map to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

/// The provider of the UI's sign-on.
pub struct WebLogin {
    config: OidcPeople,
    issuer: Arc<Issuer>,
}

impl WebLogin {
    pub fn new(config: OidcPeople, issuer: Arc<Issuer>) -> WebLogin {
        WebLogin { config, issuer }
    }

    /// The provider's URL, for the login page to name.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    fn redirect(redirect_uri: &str) -> Result<RedirectUrl, OidcError> {
        RedirectUrl::new(redirect_uri.to_owned()).map_err(|e| refused(e.to_string()))
    }

    async fn client(
        &self,
        redirect_uri: &str,
    ) -> Result<
        openidconnect::core::CoreClient<
            openidconnect::EndpointSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointNotSet,
            openidconnect::EndpointMaybeSet,
            openidconnect::EndpointMaybeSet,
        >,
        OidcError,
    > {
        let metadata = self.issuer.metadata().await?;
        let secret = match &self.config.client_secret_file {
            Some(path) => Some(ClientSecret::new(
                Secret::read(path)
                    .map_err(|e| {
                        OidcError::Unavailable(format!(
                            "client_secret_file {}: {e}",
                            path.display()
                        ))
                    })?
                    .0,
            )),
            None => None,
        };
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            secret,
        );
        Ok(client.set_redirect_uri(Self::redirect(redirect_uri)?))
    }

    /// Starts a sign-on that comes back to `redirect_uri`.
    pub async fn begin(&self, redirect_uri: &str) -> Result<Begun, OidcError> {
        let client = self.client(redirect_uri).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Begun {
            url: url.to_string(),
            pending: format!(
                "{}.{}.{}",
                state.secret(),
                nonce.secret(),
                verifier.secret()
            ),
        })
    }

    /// Finishes a sign-on: the provider came back with `code` and `state`; `pending` is the
    /// cookie [`WebLogin::begin`] set.
    pub async fn finish(
        &self,
        redirect_uri: &str,
        code: &str,
        state: &str,
        pending: &str,
    ) -> Result<Person, OidcError> {
        let mut parts = pending.splitn(3, '.');
        let (Some(want_state), Some(nonce), Some(verifier)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(refused(
                "the sign-on was not started here (no pending cookie)",
            ));
        };
        if want_state != state {
            return Err(refused("the state does not match the sign-on started here"));
        }
        let client = self.client(redirect_uri).await?;
        let http = self.issuer.http().as_client();
        let tokens = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| refused(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                RequestTokenError::Request(u) => OidcError::Unavailable(u.0),
                other => refused(format!("the code exchange failed: {}", chain(&other))),
            })?;
        let id_token: &CoreIdToken = tokens
            .extra_fields()
            .id_token()
            .ok_or_else(|| refused("the provider sent no ID token"))?;
        id_token
            .claims(&client.id_token_verifier(), &Nonce::new(nonce.to_owned()))
            .map_err(|e| refused(format!("the ID token is not good: {e}")))?;
        // Verified: its payload is the provider's word.
        let claims = payload(&id_token.to_string()).unwrap_or_default();
        self.person(&claims)
    }

    fn person(
        &self,
        claims: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Person, OidcError> {
        let name = claims
            .get(&self.config.username_claim)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                refused(format!(
                    "the ID token has no {} claim (username_claim)",
                    self.config.username_claim
                ))
            })?
            .to_owned();
        let groups = claim_strings(claims, &self.config.groups_claim);
        let mut roles: Vec<String> = self
            .config
            .group_roles
            .iter()
            .filter(|(g, _)| groups.contains(g))
            .flat_map(|(_, r)| r.iter().cloned())
            .collect();
        roles.sort();
        roles.dedup();
        Ok(Person {
            name,
            groups,
            roles,
        })
    }
}
