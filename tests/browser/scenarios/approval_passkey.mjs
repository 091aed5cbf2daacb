// The approval flow with passkeys only: bob registers a passkey through the
// link `stepgate enroll webauthn bob` prints, signs in on the approval page
// with it (no code), and approves a payment with a fresh passkey assertion.
// The requester's page, in another browser context, lands on the console's
// answer. bob's passkey lives in the DevTools virtual authenticator, a
// software stand-in for a platform authenticator with user verification.

import assert from "node:assert/strict";
import { verifyAssertion } from "../lib/assertion.mjs";
import { addAuthenticator, requesterAndApprover } from "../lib/browser.mjs";
import { confirmDeleteAsAdmin, enrollPasskey, executed, expectHeading, isComplete, responseTo, signIn, submitHeld, TIMEOUT } from "../lib/flows.mjs";

export default async function ({ demo, browser, track, log }) {
  const { req, approver: bob } = await requesterAndApprover(browser, track);
  const bobKey = await addAuthenticator(bob);
  await enrollPasskey(bob, demo, "bob");

  await signIn(req, demo);
  await confirmDeleteAsAdmin(req, demo, "alice");
  await req.goto(`${demo.origin}/admin/transfer`);
  await req.getByLabel("Amount").fill("40000");
  const { hold, txn } = await submitHeld(req, "/api/transfers", () =>
    req.getByRole("button", { name: "Send payment" }).click(),
  );
  await req.getByRole("status").filter({ hasText: "Waiting for approval by 1" }).waitFor();

  await bob.goto(`${demo.origin}/.stepup/holds`);
  await expectHeading(bob, "Approver sign-in");
  await bob.getByLabel("Name").fill("bob");
  const [before] = await bobKey.credentials();
  await bob.getByRole("button", { name: "Sign in with a passkey" }).click();
  await expectHeading(bob, "Pending approvals");
  const [afterSignIn] = await bobKey.credentials();
  assert.ok(afterSignIn.signCount > before.signCount, "signing in did not use bob's passkey");

  await bob.locator(`a[href*="${hold}"]`).first().click();
  await bob.getByRole("main").getByText("40000").first().waitFor();
  const collected = req.waitForResponse((r) => isComplete(r, hold), { timeout: TIMEOUT });
  const approved = await responseTo(
    bob,
    (r) => r.request().method() === "POST" && r.url().endsWith(`/.stepup/holds/${hold}/approve`),
    () => bob.getByRole("button", { name: "Approve with a passkey" }).click(),
  );
  assert.ok(approved.status() < 400, `approve with a passkey answered ${approved.status()}`);
  assert.match(approved.request().postData() ?? "", /webauthn/, "the approval carried no passkey assertion");
  await bob.getByRole("status").filter({ hasText: "Approved" }).waitFor();
  const [afterApproval] = await bobKey.credentials();
  assert.ok(afterApproval.signCount > afterSignIn.signCount, "the approval did not use bob's passkey");
  log(`bob approved with his passkey`);

  assert.equal((await collected).status(), 200);
  await expectHeading(req, "Payment sent");
  const transfers = executed(demo, "POST", "/api/transfers");
  assert.equal(transfers.length, 1, `the console executed ${transfers.length} payments`);
  const claims = await verifyAssertion(transfers[0].assertion, await demo.jwks());
  assert.equal(claims.txn, txn);
  assert.deepEqual((claims.approvers ?? []).map((a) => a.sub), ["bob"]);
}
