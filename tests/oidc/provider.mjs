// A throwaway OpenID Connect provider for the OIDC tests: the npm package `oidc-provider`
// (a certified implementation), with its development sign-in pages (any account name, any
// password), a fresh RSA signing key each start (KID names it, so a restart with another KID is
// a key rotation), and the clients the tests use. Started by tests/src/oidc.rs; prints
// "listening" when it takes requests.
//
// Env: OIDC_PROVIDER_MODULE (path of oidc-provider's lib/index.js), PORT, ISSUER_HOST (the
// issuer's host name; it listens on 127.0.0.1), KID, REDIRECT_URIS (space-separated, for the
// `berth` web client).
import { generateKeyPairSync } from 'node:crypto';
import { pathToFileURL } from 'node:url';

const { default: Provider } = await import(pathToFileURL(process.env.OIDC_PROVIDER_MODULE).href);
const port = Number(process.env.PORT);
const issuer = `http://${process.env.ISSUER_HOST || '127.0.0.1'}:${port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: process.env.KID, use: 'sig', alg: 'RS256' };

// Accounts by name: people with groups, CI jobs with the claims a CI platform would set.
const accounts = {
  alice: { preferred_username: 'alice', groups: ['devs'] },
  bob: { preferred_username: 'bob', groups: ['readers'] },
  'repo:org/app:ref:refs/heads/main': { repository: 'org/app', ref: 'refs/heads/main' },
  'repo:evil/app:ref:refs/heads/main': { repository: 'evil/app', ref: 'refs/heads/main' },
};

const ciClient = (client_id) => ({
  client_id,
  token_endpoint_auth_method: 'none',
  redirect_uris: ['http://127.0.0.1/ci-callback'],
  response_types: ['code'],
  grant_types: ['authorization_code'],
});

const provider = new Provider(issuer, {
  cookies: { keys: ['a-test-cookie-key'] },
  clients: [
    {
      client_id: 'berth',
      client_secret: 'berth-client-secret',
      redirect_uris: (process.env.REDIRECT_URIS || '').split(' ').filter(Boolean),
      response_types: ['code'],
      grant_types: ['authorization_code'],
    },
    ciClient('berth-ci'),
    ciClient('berth-ci-short'),
    ciClient('someone-else'),
  ],
  jwks: { keys: [jwk] },
  scopes: ['openid', 'profile', 'groups', 'ci'],
  claims: {
    openid: ['sub'],
    profile: ['preferred_username'],
    groups: ['groups'],
    ci: ['repository', 'ref'],
  },
  // Claims in the ID token itself, as Keycloak, Dex and CI platforms put them.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  ttl: {
    IdToken: (ctx, token, client) => (client.clientId === 'berth-ci-short' ? 1 : 3600),
  },
  // First-party clients: no consent page, the grant is made at sign-in.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile groups ci');
    await grant.save();
    return grant;
  },
  async findAccount(ctx, id) {
    const claims = accounts[id] || { preferred_username: id };
    return { accountId: id, async claims() { return { sub: id, ...claims }; } };
  },
});

provider.listen(port, '127.0.0.1', () => console.log('listening'));
