// The step-up page with JavaScript disabled: a wrong code is refused with
// an error on the page, the right code (computed here from the printed
// otpauth URI) releases the held delete and the browser lands on the
// console's answer to the original form POST.

import assert from "node:assert/strict";
import { verifyAssertion, txnOf } from "../lib/assertion.mjs";
import { newContext } from "../lib/browser.mjs";
import { deleteUser, executed, expectDeleted, expectHeading, isComplete, responseTo, signIn, TIMEOUT } from "../lib/flows.mjs";
import { totp } from "../lib/totp.mjs";

export default async function ({ demo, browser, track, log }) {
  const ctx = await newContext(browser, { javaScriptEnabled: false });
  track(ctx);
  const page = await ctx.newPage();
  await signIn(page, demo);

  const { hold, txn } = await deleteUser(page, demo, "dave");
  assert.equal(txn, txnOf("POST", `localhost:${demo.port}`, "/admin/users/dave/delete"), "txn is not the digest of the held request");
  log(`held as ${hold}`);

  const secret = demo.totpSecret("admin");
  const good = totp(secret);
  // A wrong code that is not valid in any step the gateway accepts.
  const near = [-1, 0, 1].map((o) => totp(secret, o));
  let wrong = "000000";
  while (near.includes(wrong)) wrong = String(Number(wrong) + 1).padStart(6, "0");
  await page.getByLabel("Your user name").fill("admin");
  await page.getByLabel("Authenticator code").fill(wrong);
  const confirm = () => page.getByRole("button", { name: "Confirm with code" }).click();
  const refused = await responseTo(page, (r) => isComplete(r, hold), confirm);
  assert.ok(refused.status() >= 400 && refused.status() < 500, `a wrong code got ${refused.status()}`);
  await page.getByRole("alert").waitFor({ timeout: TIMEOUT });
  assert.equal(executed(demo, "POST", "/admin/users/dave/delete").length, 0, "a wrong code released the delete");

  // The page after a refusal offers the form again, with the user name
  // the person typed (a person retries with the next code).
  assert.equal(await page.getByLabel("Your user name").inputValue(), "admin", "the refusal dropped the typed user name");
  await page.getByLabel("Authenticator code").fill(good);
  const released = await responseTo(page, (r) => isComplete(r, hold), confirm);
  // The console answers the delete with a redirect to its dashboard; the
  // gateway hands that answer to the browser as the answer to complete.
  assert.equal(released.status(), 303, `complete with the right code got ${released.status()}`);
  assert.equal(await released.headerValue("location"), "/admin/users");
  await expectDeleted(page, "dave");

  const deletes = executed(demo, "POST", "/admin/users/dave/delete");
  assert.equal(deletes.length, 1, `the console executed ${deletes.length} deletes of dave`);
  const claims = await verifyAssertion(deletes[0].assertion, await demo.jwks());
  assert.equal(claims.sub, "admin");
  assert.deepEqual(claims.amr, ["otp"]);
  assert.equal(claims.txn, txn);
  assert.equal(claims.hold, hold);
  log(`released with amr ${JSON.stringify(claims.amr)}`);
}
