// A real OpenID Provider (the `oidc-provider` package) for the OIDC step-up
// tests. Run by tests/oidc_stepup.rs:
//
//   node op.mjs CONFIG.json
//
// CONFIG: { cert, key (PEM paths), client_id, client_secret, redirect_uri,
//           par (bool), id_token_alg ("RS256" | "ES256" | "PS256") }
//
// It listens over HTTPS on 127.0.0.1 on a free port, issuer
// https://127.0.0.1:PORT, and prints one line {"issuer": ..., "port": ...}
// once it accepts connections.
//
// What is test-only here (and only here):
// - Interactions are driven over HTTP instead of a login form: the test
//   POSTs /interaction/{uid}/login with `sub`, `acr` and optionally
//   `auth_time` (seconds since the epoch); the OP then finishes the login
//   as if that user had authenticated at that time with that acr.
// - Consent is implied for the test client (a first-party client).
// - POST /test/rotate puts a freshly generated signing key in front of the
//   old one, as an IdP key rotation does; the old key stays published.
// - POST /test/mint-access-token (body: JSON claims) signs an RFC 9068
//   access token (typ at+jwt) with the OP's current signing key, for the
//   bearer-token proof tests; the claims are the test's.
// - POST /test/id-token-override (body: a compact JWS) makes the next token
//   response carry that string as its id_token. This is how the tests feed
//   crafted tokens (alg none, HS256) through the real callback path; the
//   code exchange itself stays real.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
import { importJWK, SignJWT } from 'jose';

// stdout carries only the ready line; the package's notices go to stderr.
console.log = console.error;
console.info = console.error;

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tls = { cert: readFileSync(config.cert), key: readFileSync(config.key) };
const alg = config.id_token_alg || 'RS256';

function newKey() {
  const kid = randomUUID();
  const pair = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

const keys = [newKey()];
let idTokenOverride = null;

function build(issuer) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.client_id,
      client_secret: config.client_secret,
      redirect_uris: [config.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: alg,
    }],
    jwks: { keys },
    acrValues: ['urn:stepgate:test:pwd', 'phr', 'phrh'],
    claims: { openid: ['sub', 'acr', 'amr', 'auth_time'], email: ['email'] },
    cookies: { keys: ['stepgate-test-op-cookie-key'] },
    features: {
      devInteractions: { enabled: false },
      claimsParameter: { enabled: true },
      pushedAuthorizationRequests: { enabled: !!config.par },
    },
    pkce: { required: () => true },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) {
        return ctx.oidc.provider.Grant.find(grantId);
      }
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId,
        accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && idTokenOverride && ctx.body && ctx.body.id_token) {
      ctx.body = { ...ctx.body, id_token: idTokenOverride };
      idTokenOverride = null;
    }
  });
  return provider;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

let provider;
let callback;

const server = https.createServer(tls, async (req, res) => {
  try {
    const url = new URL(req.url, 'https://op.invalid');
    const login = url.pathname.match(/^\/interaction\/([^/]+)\/login$/);
    if (req.method === 'POST' && login) {
      const form = new URLSearchParams(await readBody(req));
      const sub = form.get('sub');
      if (!sub) {
        res.writeHead(400).end('sub required');
        return;
      }
      const ts = form.get('auth_time') ? Number(form.get('auth_time')) : Math.floor(Date.now() / 1000);
      await provider.interactionFinished(req, res, {
        login: { accountId: sub, acr: form.get('acr') || undefined, amr: ['pwd', 'otp'], ts },
      }, { mergeWithLastSubmission: false });
      return;
    }
    if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ uid: details.uid, prompt: details.prompt, params: details.params }));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/test/rotate') {
      keys.unshift(newKey());
      provider = build(provider.issuer);
      callback = provider.callback();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kid: keys[0].kid }));
      return;
    }
    if (req.method === 'POST' && url.pathname === '/test/mint-access-token') {
      const claims = JSON.parse(await readBody(req));
      const key = await importJWK(keys[0], alg);
      const token = await new SignJWT(claims)
        .setProtectedHeader({ alg, kid: keys[0].kid, typ: 'at+jwt' })
        .sign(key);
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(token);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/test/id-token-override') {
      idTokenOverride = (await readBody(req)).trim();
      res.writeHead(204).end();
      return;
    }
    callback(req, res);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(`op error: ${err && err.message}`);
  }
});

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `https://127.0.0.1:${port}`;
  provider = build(issuer);
  callback = provider.callback();
  process.stdout.write(`${JSON.stringify({ issuer, port })}\n`);
});

process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
