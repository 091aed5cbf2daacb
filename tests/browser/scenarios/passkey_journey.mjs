// Issue #5's browser journey, steps 1-5:
//   1. enroll a passkey through the link `stepgate enroll webauthn` prints;
//   2. sign in to the demo console;
//   3. submit the delete-user form and see the step-up page;
//   4. complete with the passkey and land on the console's result page;
//   5. the console executed exactly one delete, carrying an assertion
//      (verified with `jose` against the gateway's JWKS) whose amr shows
//      WebAuthn.
// The passkey lives in the DevTools virtual authenticator, a software
// stand-in for a platform authenticator that performs user verification.

import assert from "node:assert/strict";
import { verifyAssertion, txnOf } from "../lib/assertion.mjs";
import { addAuthenticator, newContext } from "../lib/browser.mjs";
import { cookieHeader, deleteUser, enrollPasskey, expectDeleted, executed, expectHeading, signIn, usePasskey } from "../lib/flows.mjs";

export default async function ({ demo, browser, track, log }) {
  const ctx = await newContext(browser);
  track(ctx);
  const page = await ctx.newPage();
  const authenticator = await addAuthenticator(page);

  // 1. Enrollment.
  const link = await enrollPasskey(page, demo, "admin");
  const [cred] = await authenticator.credentials();
  assert.ok(cred, "the virtual authenticator holds no credential after enrollment");
  assert.equal(cred.rpId, "localhost");
  log(`enrolled credential ${cred.credentialId}`);
  // The link is single-use.
  await page.goto(link);
  await expectHeading(page, "This enrollment link is not valid");

  // 2. Sign in to the console.
  await signIn(page, demo);

  // 3. Delete carol: the gateway holds the POST and shows the step-up page.
  const { hold, txn } = await deleteUser(page, demo, "carol");
  assert.equal(txn, txnOf("POST", `localhost:${demo.port}`, "/admin/users/carol/delete"));
  // The route's label, not its action id; the user to delete in the
  // request's own section.
  const details = page.getByRole("main");
  await details.locator("dd", { hasText: "Delete a user" }).waitFor();
  assert.equal(await details.getByText("user.delete").count(), 0, "the page shows the action id");
  await page.getByRole("region", { name: "What the request says" }).getByText("carol").waitFor();
  await page.getByRole("timer").waitFor();
  assert.equal(executed(demo, "POST", "/admin/users/carol/delete").length, 0, "the delete ran before the step-up");
  log(`held as ${hold}`);

  // 4. The passkey button: the page asks the gateway for a challenge,
  // the authenticator signs it, and the page posts the proof as a form so
  // the browser navigates to the console's answer.
  const signsBefore = cred.signCount;
  const released = await usePasskey(page, hold);
  assert.equal(released.status(), 303, `complete with the passkey got ${released.status()}: ${await released.text().catch(() => "")}`);
  assert.equal(await released.headerValue("location"), "/admin/users");
  await expectDeleted(page, "carol");
  const [after] = await authenticator.credentials();
  assert.ok(after.signCount > signsBefore, "the authenticator was not asked to sign");

  // 5. What the upstream received.
  const deletes = demo.consoleLog().filter((l) => l.method === "POST" && /\/delete$/.test(l.path));
  assert.equal(deletes.length, 1, `the console executed ${deletes.length} deletes: ${JSON.stringify(deletes)}`);
  assert.equal(deletes[0].path, "/admin/users/carol/delete");
  const claims = await verifyAssertion(deletes[0].assertion, await demo.jwks());
  assert.equal(claims.sub, "admin");
  assert.equal(claims.txn, txn);
  assert.equal(claims.htm, "POST");
  assert.equal(claims.act, "user.delete");
  assert.ok(
    claims.amr.includes("hwk") || claims.amr.includes("swk"),
    `amr ${JSON.stringify(claims.amr)} does not show WebAuthn`,
  );
  assert.ok(claims.amr.includes("user") && claims.amr.includes("mfa"), `amr ${JSON.stringify(claims.amr)}`);
  assert.ok(!claims.amr.includes("otp"), "a passkey completion claims otp");
  log(`released with amr ${JSON.stringify(claims.amr)} acr ${claims.acr}`);

  // The proof was used once: posting the same completion again changes nothing.
  const again = await demo.request("POST", `/.stepup/holds/${hold}/complete`, {
    headers: { "content-type": "application/json", cookie: await cookieHeader(ctx) },
    body: JSON.stringify({}),
  });
  assert.ok(again.status >= 400, `a second complete on a released hold got ${again.status}`);
  assert.equal(executed(demo, "POST", "/admin/users/carol/delete").length, 1);
}
