// A real OpenID Provider (the `oidc-provider` package) for the OIDC step-up
// tests. Run by tests/oidc_stepup.rs:
//
//   node op.mjs CONFIG.json
//
// CONFIG: { cert, key (PEM paths), client_id, client_secret, redirect_uri,
//           par (bool), id_token_alg ("RS256" | "ES256" | "PS256"),
//           client_jwks (optional: the client authenticates with
//             private_key_jwt, RFC 7523, by a key of this JWK Set, instead
//             of client_secret_basic with client_secret),
//           pages (optional: { password }, see below) }
//
// It listens over HTTPS on 127.0.0.1 on a free port, issuer
// https://127.0.0.1:PORT, and prints one line {"issuer": ..., "port": ...}
// once it accepts connections.
//
// What is test-only here (and only here):
// - Without `pages`, interactions are driven over HTTP instead of a login
//   form: the test POSTs /interaction/{uid}/login with `sub`, `acr` and
//   optionally `auth_time` (seconds since the epoch); the OP then finishes
//   the login as if that user had authenticated at that time with that
//   acr. Consent is implied for the test client (a first-party client).
// - With `pages`, a browser signs in on HTML pages: a login form (user
//   name, the one test password, and a box "I also confirmed with my
//   security key" that stands in for a second factor: ticked, the login's
//   acr is `phr`, else `urn:stepgate:test:pwd`), then a consent page
//   (Allow / Cancel; Cancel answers the client with access_denied).
// - POST /test/rotate puts a freshly generated signing key in front of the
//   old one, as an IdP key rotation does; the old key stays published.
//   (oidc-provider reads its keys once, so the Provider is built again
//   around the same store.)
// - POST /test/mint-access-token (body: JSON claims) signs an RFC 9068
//   access token (typ at+jwt) with the OP's current signing key, for the
//   bearer-token proof tests; the claims are the test's.
// - POST /test/id-token-override (body: a compact JWS) makes the next token
//   response carry that string as its id_token. This is how the tests feed
//   crafted tokens (alg none, HS256) through the real callback path; the
//   code exchange itself stays real.
// - POST /test/id-token-claims (body: JSON claims) makes the next token
//   response's ID token carry these claims over its own, signed again with
//   the OP's current key: a token that verifies but names another issuer
//   or audience, or has expired, as a misconfigured or mixed-up OP would
//   hand out.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';
// The package's own in-memory store, used directly (not through its
// default, which makes a store per Provider instance) so that everything
// the OP holds (pushed requests, interactions, sessions, codes) outlives
// the rebuild that /test/rotate does. The lockfile pins the version.
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';
import { decodeJwt, importJWK, SignJWT } from 'jose';

// stdout carries only the ready line; the package's notices go to stderr.
console.log = console.error;
console.info = console.error;

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const tls = { cert: readFileSync(config.cert), key: readFileSync(config.key) };
const alg = config.id_token_alg || 'RS256';

// The key pair comes out of the generator already as JWKs. Exporting a
// generated KeyObject afterwards (`privateKey.export({ format: 'jwk' })`)
// can deadlock Node 20 for good: the export holds the key's mutex while it
// allocates, a garbage collection then frees the finished generator job,
// and the job's destructor waits for that same mutex on the same thread.
// Whether a collection falls there depends on heap timing, so the OP hung
// at start-up now and then, more often on a loaded machine.
const AS_JWK = { publicKeyEncoding: { format: 'jwk' }, privateKeyEncoding: { format: 'jwk' } };

function newKey() {
  const kid = randomUUID();
  const pair = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256', ...AS_JWK })
    : generateKeyPairSync('rsa', { modulusLength: 2048, ...AS_JWK });
  return { ...pair.privateKey, kid, alg, use: 'sig' };
}

const keys = [newKey()];
let idTokenOverride = null;
let idTokenClaims = null;

async function signWithCurrentKey(claims, typ) {
  const key = await importJWK(keys[0], alg);
  return new SignJWT(claims).setProtectedHeader({ alg, kid: keys[0].kid, typ }).sign(key);
}

// The client authenticates at the token and PAR endpoints either with its
// secret or (private_key_jwt) with a signed assertion by its own key.
const clientAuth = config.client_jwks
  ? { token_endpoint_auth_method: 'private_key_jwt', jwks: config.client_jwks }
  : { token_endpoint_auth_method: 'client_secret_basic', client_secret: config.client_secret };

// Without pages, consent is implied: every login gets a grant for the
// client. With pages, the person answers the consent page.
async function impliedGrant(ctx) {
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
}

function build(issuer) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: config.client_id,
      redirect_uris: [config.redirect_uri],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: alg,
      ...clientAuth,
    }],
    jwks: { keys },
    adapter: class SharedMemoryAdapter extends MemoryAdapter {},
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
    ...(config.pages ? {} : { loadExistingGrant: impliedGrant }),
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path === '/token' && idTokenOverride && ctx.body && ctx.body.id_token) {
      ctx.body = { ...ctx.body, id_token: idTokenOverride };
      idTokenOverride = null;
    } else if (ctx.path === '/token' && idTokenClaims && ctx.body && ctx.body.id_token) {
      const claims = { ...decodeJwt(ctx.body.id_token), ...idTokenClaims };
      ctx.body = { ...ctx.body, id_token: await signWithCurrentKey(claims, 'JWT') };
      idTokenClaims = null;
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

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function sendPage(res, status, title, body) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} - Test identity provider</title>
<style>
 body { font-family: sans-serif; background: #eef1f5; margin: 0; }
 main { max-width: 26rem; margin: 4rem auto; background: #fff; padding: 2rem; border-radius: 8px; border-top: 6px solid #5b3cc4; }
 label { display: block; margin: .8rem 0; } input[type=text], input[type=password] { display: block; width: 100%; padding: .4rem; }
 button { padding: .5rem 1.2rem; margin-right: .5rem; } .error { color: #a00; } .op { color: #5b3cc4; font-weight: bold; }
</style></head>
<body><main><p class="op">Test identity provider</p><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`);
}

// The login page (with an error line after a wrong password).
function loginPage(res, details, error) {
  const uid = escapeHtml(details.uid);
  sendPage(res, error ? 401 : 200, 'Sign in', `
<p><b>${escapeHtml(details.params.client_id)}</b> asks you to sign in again.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
 <label>User name <input type="text" name="login" autocomplete="username"></label>
 <label>Password <input type="password" name="password" autocomplete="current-password"></label>
 <label><input type="checkbox" name="security_key" value="1"> I also confirmed with my security key</label>
 <button type="submit">Sign in</button>
</form>`);
}

function consentPage(res, details) {
  const uid = escapeHtml(details.uid);
  const scopes = String(details.params.scope || '').split(' ').filter(Boolean);
  sendPage(res, 200, 'Allow access', `
<p><b>${escapeHtml(details.params.client_id)}</b> wants to confirm that it is you, <b>${escapeHtml(details.session?.accountId ?? '')}</b>.</p>
<p>It asks for: ${scopes.map(escapeHtml).join(', ')}</p>
<form method="post" action="/interaction/${uid}/confirm"><button type="submit">Allow</button></form>
<form method="post" action="/interaction/${uid}/abort"><button type="submit">Cancel</button></form>`);
}

// The consent the person gave on the page: a grant for what the request
// still misses (as oidc-provider's own example does).
async function grantConsent(details) {
  const { prompt: { details: missing }, params, session: { accountId } } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  return details.grantId ? {} : { grantId };
}

const server = https.createServer(tls, async (req, res) => {
  try {
    const url = new URL(req.url, 'https://op.invalid');
    const step = url.pathname.match(/^\/interaction\/([^/]+)\/(login|confirm|abort)$/);
    if (config.pages && req.method === 'POST' && step) {
      const details = await provider.interactionDetails(req, res);
      const form = new URLSearchParams(await readBody(req));
      if (step[2] === 'login') {
        if (!form.get('login') || form.get('password') !== config.pages.password) {
          loginPage(res, details, 'Wrong user name or password.');
          return;
        }
        const key = form.get('security_key') === '1';
        await provider.interactionFinished(req, res, {
          login: {
            accountId: form.get('login'),
            acr: key ? 'phr' : 'urn:stepgate:test:pwd',
            amr: key ? ['pwd', 'hwk'] : ['pwd'],
          },
        }, { mergeWithLastSubmission: false });
      } else if (step[2] === 'confirm') {
        const consent = await grantConsent(details);
        await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
      } else {
        await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'the user cancelled',
        }, { mergeWithLastSubmission: false });
      }
      return;
    }
    if (config.pages && req.method === 'GET' && url.pathname.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') {
        loginPage(res, details);
      } else {
        consentPage(res, details);
      }
      return;
    }
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
      const token = await signWithCurrentKey(JSON.parse(await readBody(req)), 'at+jwt');
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(token);
      return;
    }
    if (req.method === 'POST' && url.pathname === '/test/id-token-override') {
      idTokenOverride = (await readBody(req)).trim();
      res.writeHead(204).end();
      return;
    }
    if (req.method === 'POST' && url.pathname === '/test/id-token-claims') {
      idTokenClaims = JSON.parse(await readBody(req));
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
