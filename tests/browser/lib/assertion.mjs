// The upstream's view: verify an X-StepUp-Assertion with Node `jose`
// against the gateway's JWKS, independently of stepgate's own code.

import { createHash } from "node:crypto";
import { createLocalJWKSet, jwtVerify } from "jose";

export const DEMO_AUDIENCE = "acme-admin";
export const DEMO_ISSUER = "stepgate-demo";

export async function verifyAssertion(token, jwks, { audience = DEMO_AUDIENCE, issuer = DEMO_ISSUER } = {}) {
  const { payload } = await jwtVerify(token, createLocalJWKSet(jwks), {
    algorithms: ["ES256"],
    typ: "stepup+jwt",
    audience,
    issuer,
    requiredClaims: ["exp", "iat", "jti", "sub", "txn", "amr"],
  });
  return payload;
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");

/// README: txn = b64url(SHA-256(METHOD \n host \n path_and_query \n b64url(SHA-256(body)))).
export function txnOf(method, host, pathAndQuery, body = "") {
  const bodyHash = b64url(createHash("sha256").update(body).digest());
  return b64url(createHash("sha256").update(`${method}\n${host}\n${pathAndQuery}\n${bodyHash}`).digest());
}

/// `hold` and `txn` from the StepUp WWW-Authenticate challenge.
export function parseChallenge(wwwAuthenticate) {
  const v = [].concat(wwwAuthenticate ?? []).join(", ");
  const hold = v.match(/StepUp[^]*?hold="([^"]+)"/)?.[1];
  const txn = v.match(/StepUp[^]*?txn="([^"]+)"/)?.[1];
  if (!hold || !txn) throw new Error(`no StepUp challenge in WWW-Authenticate: ${v}`);
  return { hold, txn };
}
