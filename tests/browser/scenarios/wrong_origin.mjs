// A phishing page at another origin (https://localhost:<other port>, same
// RP id, so the authenticator signs for it) relays the gateway's challenge
// for the victim's hold and gets a passkey assertion from the victim's
// browser. The gateway must refuse it.
//
// Why the refusal can only come from the origin check: the test checks
// that, apart from the origin in clientDataJSON, the relayed assertion is
// exactly what the gateway asked for — the challenge it issued for this
// hold, type webauthn.get, the RP id hash of "localhost", user presence and
// verification flags, and a signature that verifies with the enrolled key
// (taken from the virtual authenticator). The gateway's log names the
// origin as the reason, and the same browser, credential and hold then
// complete on the gateway's own origin.
// The passkey lives in the DevTools virtual authenticator (a software
// stand-in for a platform authenticator with user verification).

import assert from "node:assert/strict";
import { createHash, createPrivateKey, createPublicKey, verify } from "node:crypto";
import https from "node:https";
import { verifyAssertion } from "../lib/assertion.mjs";
import { addAuthenticator, newContext } from "../lib/browser.mjs";
import { cookieHeader, deleteUser, enrollPasskey, executed, expectHeading, signIn, usePasskey } from "../lib/flows.mjs";

async function phishingSite(demo) {
  const srv = https.createServer({ cert: demo.certPem, key: demo.keyPem }, (req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end("<!doctype html><title>Acme Admin</title><h1>Sign in to continue</h1>");
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return srv;
}

export default async function ({ demo, browser, track, log }) {
  const ctx = await newContext(browser);
  track(ctx);
  const page = await ctx.newPage();
  const authenticator = await addAuthenticator(page);
  await enrollPasskey(page, demo, "admin");
  const [cred] = await authenticator.credentials();
  await signIn(page, demo);
  const { hold } = await deleteUser(page, demo, "carol");
  const cookie = await cookieHeader(ctx);

  // The relay: the gateway's real challenge for this hold.
  const opts = await demo.request("GET", `/.stepup/holds/${hold}/webauthn?user=admin`, { headers: { cookie } });
  assert.equal(opts.status, 200, `no challenge for the hold: ${opts.status} ${opts.text}`);
  const publicKey = opts.json().publicKey;

  const srv = await phishingSite(demo);
  const evil = `https://localhost:${srv.address().port}`;
  let credential;
  try {
    await page.goto(`${evil}/`);
    credential = await page.evaluate(async (pk) => {
      const bin = (s) => Uint8Array.from(atob(s.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0));
      const b64u = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
      const c = await navigator.credentials.get({
        publicKey: {
          ...pk,
          challenge: bin(pk.challenge),
          allowCredentials: (pk.allowCredentials ?? []).map((x) => ({ ...x, id: bin(x.id) })),
        },
      });
      return {
        id: c.id,
        rawId: b64u(c.rawId),
        type: c.type,
        response: {
          authenticatorData: b64u(c.response.authenticatorData),
          clientDataJSON: b64u(c.response.clientDataJSON),
          signature: b64u(c.response.signature),
          userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null,
        },
        extensions: {},
      };
    }, publicKey);
  } finally {
    srv.close();
  }

  // Everything but the origin is right.
  const clientData = JSON.parse(Buffer.from(credential.response.clientDataJSON, "base64url"));
  assert.equal(clientData.origin, evil);
  assert.equal(clientData.type, "webauthn.get");
  assert.equal(clientData.challenge, publicKey.challenge);
  const authData = Buffer.from(credential.response.authenticatorData, "base64url");
  assert.deepEqual(authData.subarray(0, 32), createHash("sha256").update("localhost").digest(), "RP id hash");
  assert.equal(authData[32] & 0x05, 0x05, "user presence and verification flags");
  const pub = createPublicKey(createPrivateKey({ key: Buffer.from(cred.privateKey, "base64"), format: "der", type: "pkcs8" }));
  const signed = Buffer.concat([authData, createHash("sha256").update(Buffer.from(credential.response.clientDataJSON, "base64url")).digest()]);
  assert.ok(verify("sha256", signed, pub, Buffer.from(credential.response.signature, "base64url")), "signature");
  assert.equal(credential.rawId, cred.credentialId.replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_"));

  const refused = await demo.request("POST", `/.stepup/holds/${hold}/complete`, {
    headers: { cookie, "content-type": "application/json" },
    body: JSON.stringify({ method: "webauthn", credential }),
  });
  assert.ok(refused.status >= 400 && refused.status < 500, `the gateway accepted a phished assertion (${refused.status})`);
  assert.equal(refused.json().error, "invalid_proof", refused.text);
  assert.equal(executed(demo, "POST", "/admin/users/carol/delete").length, 0, "the phished assertion released the delete");
  log(`origin ${evil} refused: ${refused.status} ${refused.text}`);
  // And the gateway says why: its origin check.
  const why = await demo.logLine(new RegExp(`proof rejected hold=${hold} method=webauthn`));
  assert.match(why, /reason=.*origin/i, why);

  // The victim on the real origin: same browser, credential and hold.
  await page.goto(`${demo.origin}/.stepup/holds/${hold}`);
  await expectHeading(page, "Confirm this action");
  const released = await usePasskey(page, hold);
  assert.equal(released.status(), 303, `the real origin's passkey proof got ${released.status()}`);
  const deletes = executed(demo, "POST", "/admin/users/carol/delete");
  assert.equal(deletes.length, 1);
  const claims = await verifyAssertion(deletes[0].assertion, await demo.jwks());
  assert.ok(claims.amr.includes("hwk") || claims.amr.includes("swk"), JSON.stringify(claims.amr));
}
