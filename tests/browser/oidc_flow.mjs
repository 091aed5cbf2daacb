// The OIDC step-up in headless Chromium, against a gateway and a real
// OpenID Provider (oidc-provider, tests/oidc/op.mjs with its HTML pages)
// that tests/oidc_stepup.rs started:
//
//   node oidc_flow.mjs CONFIG.json
//
// CONFIG: { gateway_port, gateway_cert, op_issuer, op_cert, password,
//           cookie: { name, value }, screenshots (a directory) }
//
// The browser knows the gateway as https://gw.test (the redirect URI the
// OP has registered): Chromium resolves gw.test to the gateway's port.
// Both certificates are trusted by their public keys only.
//
// The person: submits a form to a sensitive route, sees the step-up page,
// chooses "Sign in again", signs in at the OP and cancels on its consent
// page (refused: back on the step-up page), signs in again and allows,
// and lands on the upstream's answer to the form. Prints `hold <id>` and,
// when every check held, `ok oidc_flow`. The test then checks what the
// upstream received.

import assert from "node:assert/strict";
import { X509Certificate, createHash } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { launch, newContext } from "./lib/browser.mjs";
import { parseChallenge } from "./lib/assertion.mjs";
import { expectHeading, responseTo, TIMEOUT } from "./lib/flows.mjs";

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const GW = "https://gw.test";
const FORM_PAGE = `${GW}/admin/payments`;

function spkiHash(certFile) {
  const spki = new X509Certificate(fs.readFileSync(certFile)).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(spki).digest("base64");
}

fs.mkdirSync(config.screenshots, { recursive: true });
const shots = [];
async function shot(page, name) {
  const file = path.join(config.screenshots, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

/// The page the browser shows, as text.
const text = (page) => page.locator("body").innerText();

/// From the step-up page to the OP's login page, by the link the page
/// offers; returns the authorization request the browser carried.
async function toLogin(page) {
  const authorize = [];
  const seen = (r) => r.url().startsWith(`${config.op_issuer}/auth`) && authorize.push(r.url());
  page.on("request", seen);
  await page.getByRole("link", { name: "Sign in again with 127.0.0.1" }).click();
  await expectHeading(page, "Sign in");
  page.off("request", seen);
  assert.ok(page.url().startsWith(`${config.op_issuer}/interaction/`), `not at the OP's login: ${page.url()}`);
  assert.ok(authorize.length >= 1, "the browser never went to the OP's authorization endpoint");
  return new URL(authorize[0]);
}

async function signInAtOp(page, { password = config.password } = {}) {
  await page.getByLabel("User name").fill("alice");
  await page.getByLabel("Password").fill(password);
  await page.getByLabel("I also confirmed with my security key").check();
  await page.getByRole("button", { name: "Sign in" }).click();
}

const browser = await launch(
  [spkiHash(config.gateway_cert), spkiHash(config.op_cert)],
  [`--host-resolver-rules=MAP gw.test 127.0.0.1:${config.gateway_port}`],
);
let page;
try {
  const ctx = await newContext(browser);
  // The application's session cookie, as the application would have set
  // it at sign-in (SameSite=Lax, so it comes along when the OP sends the
  // browser back: a top-level GET navigation).
  await ctx.addCookies([{
    name: config.cookie.name, value: config.cookie.value, domain: "gw.test", path: "/",
    secure: true, httpOnly: true, sameSite: "Lax",
  }]);
  page = await ctx.newPage();

  // The application's payment form. The test serves this one page itself
  // (the recording upstream has no HTML); its POST goes to the gateway.
  await page.route(FORM_PAGE, (route) => route.fulfill({
    contentType: "text/html",
    body: `<!doctype html><title>Payments</title><h1>New payment</h1>
<form method="post" action="/admin/wire"><label>Amount <input name="amount" value="100"></label>
<label>To <input name="to" value="DE89370400440532013000"></label><button>Send payment</button></form>`,
  }));
  await page.goto(FORM_PAGE);
  await expectHeading(page, "New payment");
  const held = await responseTo(
    page,
    (r) => r.request().method() === "POST" && r.url() === `${GW}/admin/wire`,
    () => page.getByRole("button", { name: "Send payment" }).click(),
  );
  assert.equal(held.status(), 401, `the gateway did not hold the payment: ${held.status()}`);
  const { hold } = parseChallenge(await held.headerValue("www-authenticate"));
  console.log(`hold ${hold}`);
  await expectHeading(page, "Confirm this action");
  const stepUp = await text(page);
  assert.match(stepUp, /Sign in again with 127\.0\.0\.1/, stepUp);
  await shot(page, "oidc-1-step-up-page");

  // By PAR: the browser carries only a reference to the pushed request.
  const authorize = await toLogin(page);
  assert.ok(authorize.searchParams.get("request_uri"), `no request_uri in ${authorize}`);
  for (const p of ["acr_values", "max_age", "prompt", "nonce", "code_challenge"]) {
    assert.equal(authorize.searchParams.get(p), null, `${p} travels in the browser: ${authorize}`);
  }
  assert.match(await text(page), /stepgate-test asks you to sign in again/);
  await shot(page, "oidc-2-op-login");

  // A wrong password stays at the OP.
  await signInAtOp(page, { password: "not-the-password" });
  await page.getByRole("alert").filter({ hasText: "Wrong user name or password" }).waitFor({ timeout: TIMEOUT });

  await signInAtOp(page);
  await expectHeading(page, "Allow access");
  assert.match(await text(page), /wants to confirm that it is you, alice/);
  await shot(page, "oidc-3-op-consent");

  // Cancel: the OP sends the browser back with access_denied, which is no
  // proof; the step-up page says so and offers the sign-in again.
  const refused = await responseTo(
    page,
    (r) => r.url().startsWith(`${GW}/.stepup/oidc/callback?`),
    () => page.getByRole("button", { name: "Cancel" }).click(),
  );
  assert.equal(refused.status(), 401, `a cancelled sign-in got ${refused.status()}`);
  await expectHeading(page, "Confirm this action");
  const refusal = await text(page);
  assert.match(refusal, /The sign-in at the identity provider was not accepted for this action \(4 attempts left\)/, refusal);
  await shot(page, "oidc-4-refused");

  // Again, and this time allow: the callback releases the held POST and
  // the browser shows the upstream's answer to it.
  await toLogin(page);
  await signInAtOp(page);
  await expectHeading(page, "Allow access");
  const released = await responseTo(
    page,
    (r) => r.url().startsWith(`${GW}/.stepup/oidc/callback?`),
    () => page.getByRole("button", { name: "Allow" }).click(),
  );
  assert.equal(released.status(), 200, `the callback answered ${released.status()}`);
  assert.equal(await released.headerValue("x-upstream"), "recorder", "the answer is not the upstream's");
  const answer = JSON.parse(await text(page));
  assert.deepEqual(answer, { method: "POST", target: "/admin/wire", len: "amount=100&to=DE89370400440532013000".length });
  await shot(page, "oidc-5-upstream-answer");

  // Back to the callback URL once more: the state is spent.
  await page.goto(released.url());
  await expectHeading(page, "This sign-in link is not valid");
  console.log(`screenshots ${JSON.stringify(shots)}`);
  console.log("ok oidc_flow");
} catch (e) {
  process.exitCode = 1;
  console.error(`FAILED oidc_flow: ${e?.stack ?? e}`);
  if (page && !page.isClosed()) {
    try {
      await page.screenshot({ path: path.join(config.screenshots, "failure.png"), fullPage: true, timeout: 5000 });
      console.error(`  at ${page.url()}:\n${(await text(page)).slice(0, 1500)}`);
    } catch {}
  }
} finally {
  await browser.close().catch(() => {});
}
