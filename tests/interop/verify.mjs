// Verify an X-StepUp-Assertion with the `jose` library, independently of
// stepgate. usage: node verify.mjs JWKS_FILE TOKEN AUDIENCE ISSUER
// Prints the verified claims as JSON; exits non-zero on any failure.
import { readFileSync } from "node:fs";
import { createLocalJWKSet, jwtVerify } from "jose";

const [jwksPath, token, audience, issuer] = process.argv.slice(2);
const jwks = createLocalJWKSet(JSON.parse(readFileSync(jwksPath, "utf8")));
try {
  const { payload, protectedHeader } = await jwtVerify(token, jwks, {
    algorithms: ["ES256"],
    typ: "stepup+jwt",
    audience,
    issuer,
    requiredClaims: ["exp", "iat", "jti", "sub"],
  });
  if (protectedHeader.alg !== "ES256") throw new Error("alg");
  console.log(JSON.stringify(payload));
} catch (e) {
  console.error(String(e));
  process.exit(1);
}
