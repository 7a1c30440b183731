// A CI platform's token service in the shape of GitHub Actions': a discovery document with
// only the fields GitHub publishes (no authorization endpoint: nobody signs in here), its
// signing key (KID names it; a restart with another KID is a rotation), and ID tokens minted
// on request for a job, as the platform hands them to jobs. Node's own crypto, no packages.
//
// Env: PORT. GET /token?aud=A&repository=R[&ttl=S] answers {"value": JWT}, as GitHub's does.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomUUID, sign } from 'node:crypto';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const kid = process.env.KID;
const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...publicKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');

function mint(q) {
  const now = Math.floor(Date.now() / 1000);
  const repository = q.get('repository');
  const claims = {
    jti: randomUUID(),
    sub: `repo:${repository}:ref:refs/heads/main`,
    aud: q.get('aud'),
    ref: 'refs/heads/main',
    repository,
    repository_owner: repository.split('/')[0],
    iss: issuer,
    nbf: now - 5,
    iat: now - 5,
    exp: now + Number(q.get('ttl') || 300),
  };
  const head = b64({ typ: 'JWT', alg: 'RS256', kid });
  const body = b64(claims);
  const sig = sign('sha256', Buffer.from(`${head}.${body}`), privateKey).toString('base64url');
  return `${head}.${body}.${sig}`;
}

createServer((req, res) => {
  const url = new URL(req.url, issuer);
  const json = (o) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(o));
  };
  switch (url.pathname) {
    case '/.well-known/openid-configuration':
      return json({
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks`,
        subject_types_supported: ['public', 'pairwise'],
        response_types_supported: ['id_token'],
        claims_supported: ['sub', 'aud', 'exp', 'iat', 'iss', 'jti', 'nbf', 'ref', 'repository'],
        id_token_signing_alg_values_supported: ['RS256'],
        scopes_supported: ['openid'],
      });
    case '/.well-known/jwks':
      return json({ keys: [jwk] });
    case '/token':
      return json({ value: mint(url.searchParams) });
    default:
      res.statusCode = 404;
      return res.end();
  }
}).listen(port, '127.0.0.1', () => console.log('listening'));
