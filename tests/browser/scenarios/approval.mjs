// A transfer over 10,000 waits for bob's approval. The requester (admin)
// and the approver (bob) are two separate browser contexts, so they share
// no cookies. The requester has confirmed a delete with their own code
// earlier in the session, so the gateway knows who asks: bob is shown
// "admin" as the requester, and the assertion's `sub` is admin, with bob
// in `approvers`. Bob signs in on /.stepup/holds with his TOTP, finds the
// request by its check code, reviews it and approves with a fresh code;
// the requester's page, which the test never reloads, updates by itself
// and lands on the console's answer to the original transfer POST.

import assert from "node:assert/strict";
import { verifyAssertion, txnOf } from "../lib/assertion.mjs";
import { requesterAndApprover } from "../lib/browser.mjs";
import { deleteUser, executed, expectDeleted, expectHeading, isComplete, responseTo, signIn, submitHeld, TIMEOUT } from "../lib/flows.mjs";
import { totp } from "../lib/totp.mjs";

export default async function ({ demo, browser, track, log }) {
  const { req, approver: bob } = await requesterAndApprover(browser, track);

  // The requester confirms a delete with their code: from now on the
  // gateway knows who is behind this session.
  await signIn(req, demo);
  const del = await deleteUser(req, demo, "alice");
  await req.getByLabel("Your user name").fill("admin");
  await req.getByLabel("Authenticator code").fill(totp(demo.totpSecret("admin")));
  const deleted = await responseTo(
    req,
    (r) => isComplete(r, del.hold),
    () => req.getByRole("button", { name: "Confirm with code" }).click(),
  );
  assert.equal(deleted.status(), 303, `the delete's completion got ${deleted.status()}`);
  await expectDeleted(req, "alice");

  // The requester sends 25,000.
  await req.goto(`${demo.origin}/admin/transfer`);
  await expectHeading(req, "Payments");
  const form = { payee: "ACME Supplies Ltd", iban: "DE89 3704 0044 0532 0130 00", amount: "25000" };
  await req.getByLabel("Payee").fill(form.payee);
  await req.getByLabel("IBAN").fill(form.iban);
  await req.getByLabel("Amount").fill(form.amount);
  const { hold, txn } = await submitHeld(req, "/api/transfers", () =>
    req.getByRole("button", { name: "Send payment" }).click(),
  );
  const body = new URLSearchParams(form).toString();
  assert.equal(txn, txnOf("POST", `localhost:${demo.port}`, "/api/transfers", body), "txn is not the held request's");
  const status = req.getByRole("status").filter({ hasText: /approv/i });
  await status.filter({ hasText: "Waiting for approval by 1" }).waitFor();
  const checkCode = (await req.locator("code.check").innerText()).match(/[A-Z0-9]{4}-[A-Z0-9]{4}/)?.[0];
  assert.ok(checkCode, "the step-up page shows no check code");

  // The route needs bob's approval only: no code or passkey is offered.
  assert.equal(await req.getByRole("button", { name: "Confirm with code" }).count(), 0);
  assert.equal(executed(demo, "POST", "/api/transfers").length, 0, "the transfer ran before bob approved");

  // Bob, in his own browser.
  await bob.goto(`${demo.origin}/.stepup/holds`);
  await expectHeading(bob, "Approver sign-in");
  const bobSecret = demo.totpSecret("bob");
  await bob.getByLabel("Name").fill("bob");
  await bob.getByLabel("Authenticator code").fill(totp(bobSecret));
  await bob.getByRole("button", { name: "Sign in with code" }).click();
  await expectHeading(bob, "Pending approvals");
  const link = bob.getByRole("link").filter({ hasText: checkCode });
  assert.equal(await link.count(), 1, `bob's list has no single entry with check code ${checkCode}`);
  await link.click();
  const review = bob.locator("main");
  await review.getByText(checkCode).first().waitFor();
  // The route's label, not its action id.
  await review.getByText("Send a payment").first().waitFor();
  assert.equal(await review.getByText("money.transfer").count(), 0, "the page shows the action id");
  await review.getByText("25000").first().waitFor();
  await review.getByText("ACME Supplies Ltd").first().waitFor();
  await review.getByText("DE89 3704 0044 0532 0130 00").first().waitFor();
  // Who asked: the person who stepped up on the requester's session.
  const requestedBy = review.locator("dt", { hasText: "Requested by" }).locator("xpath=following-sibling::dd");
  assert.equal((await requestedBy.innerText()).trim(), "admin", "bob is not shown who asked");
  // The request's own values sit in their own section, apart from bob's form.
  const shown = review.getByRole("region", { name: "What the request says" });
  await shown.getByText("25000").waitFor();
  assert.equal(await shown.getByRole("textbox").count(), 0, "a form field sits among the request's values");

  // Approving needs a fresh proof: the code of the next step, since the
  // sign-in used this step's (each code counts once).
  await bob.getByLabel("Comment").fill("invoice 4711 checked");
  await bob.getByLabel("Authenticator code").fill(totp(bobSecret, 1));
  // The requester's page, left alone, collects the released request.
  const collected = req.waitForResponse((r) => isComplete(r, hold), { timeout: TIMEOUT });
  const approved = await responseTo(
    bob,
    (r) => r.request().method() === "POST" && r.url().endsWith(`/.stepup/holds/${hold}/approve`),
    () => bob.getByRole("button", { name: "Approve with code" }).click(),
  );
  assert.ok(approved.status() < 400, `approve answered ${approved.status()}`);
  await bob.getByRole("status").filter({ hasText: "Approved" }).waitFor();
  log(`bob approved ${checkCode}`);

  // The requester's page collects by itself and shows the console's answer.
  const collect = await collected;
  assert.equal(collect.status(), 200, `the requester's collect got ${collect.status()}`);
  await expectHeading(req, "Payment sent");
  await req.getByText("Sent 25000 EUR to ACME Supplies Ltd.").waitFor({ timeout: TIMEOUT });
  const transfers = executed(demo, "POST", "/api/transfers");
  assert.equal(transfers.length, 1, `the console executed ${transfers.length} transfers`);
  const claims = await verifyAssertion(transfers[0].assertion, await demo.jwks());
  // Approval-only: the requester is accountable, the approver is listed.
  assert.equal(claims.sub, "admin");
  assert.equal(claims.acr, "approval");
  assert.equal(claims.txn, txn);
  assert.deepEqual(
    (claims.approvers ?? []).map((a) => a.sub),
    ["bob"],
    `approvers ${JSON.stringify(claims.approvers)}`,
  );
}
