// A page on another origin (https://localhost:<other port>) posts forms at
// the gateway's `complete` for the victim's hold, and the victim's browser
// attaches the victim's console session: an empty form that collects a
// transfer bob already approved, and a break-glass form with a reason.
// The attacker learned the hold id from the webhook or an approver's
// queue. The gateway must refuse both as cross-site (403 `forbidden`) and
// the console must never execute the transfer; the victim's own page on
// the gateway's origin then collects it.

import assert from "node:assert/strict";
import https from "node:https";
import { requesterAndApprover } from "../lib/browser.mjs";
import { confirmDeleteAsAdmin, executed, expectHeading, isComplete, responseTo, signIn, submitHeld, TIMEOUT } from "../lib/flows.mjs";

/// The attacker's site: `/collect` and `/break` each auto-submit a form
/// to the gateway as soon as the page loads.
async function attackerSite(demo, hold) {
  const action = `${demo.origin}/.stepup/holds/${hold}/complete`;
  const forms = {
    "/collect": "",
    "/break": '<input name="method" value="break_glass"><input name="reason" value="urgent, CEO asked">',
  };
  const srv = https.createServer({ cert: demo.certPem, key: demo.keyPem }, (req, res) => {
    const fields = forms[req.url];
    if (fields === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(
      `<!doctype html><title>You won a prize</title><h1>Claim your prize</h1>` +
        `<form id="f" method="POST" action="${action}">${fields}</form>` +
        `<script>document.getElementById("f").submit()</script>`,
    );
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return srv;
}


export default async function ({ demo, browser, track, log }) {
  const { req: victim } = await requesterAndApprover(browser, track);
  await signIn(victim, demo);
  await confirmDeleteAsAdmin(victim, demo, "alice");
  await victim.goto(`${demo.origin}/admin/transfer`);
  await expectHeading(victim, "Payments");
  await victim.getByLabel("Payee").fill("Mallory Holdings");
  await victim.getByLabel("IBAN").fill("DE02 1203 0000 0000 2020 51");
  await victim.getByLabel("Amount").fill("25000");
  const { hold, txn } = await submitHeld(victim, "/api/transfers", () =>
    victim.getByRole("button", { name: "Send payment" }).click(),
  );
  // The victim walks away from the step-up page (so it does not collect).
  await victim.goto(`${demo.origin}/admin/transfer`);
  await expectHeading(victim, "Payments");

  // Bob approves with his API key; the hold now only waits to be collected.
  const approved = await demo.request("POST", `/.stepup/holds/${hold}/approve`, {
    headers: { authorization: `Bearer ${demo.apiKey("bob")}`, "content-type": "application/json" },
    body: JSON.stringify({ txn, comment: "ok" }),
  });
  assert.equal(approved.status, 200, `bob's approval: ${approved.status} ${approved.text}`);
  assert.equal(executed(demo, "POST", "/api/transfers").length, 0);

  const srv = await attackerSite(demo, hold);
  const evil = `https://localhost:${srv.address().port}`;
  try {
    for (const path of ["/break", "/collect"]) {
      const resp = await responseTo(
        victim,
        (r) => isComplete(r, hold),
        () => victim.goto(`${evil}${path}`),
      );
      const sent = resp.request().headers();
      log(`${path}: origin=${sent.origin} -> ${resp.status()}`);
      // The browser did attach the victim's session: the refusal is the
      // gateway's origin check, not a missing cookie.
      const cookies = (await resp.request().allHeaders()).cookie ?? "";
      assert.match(cookies, /SESSIONID=/, `the browser sent no session cookie with ${path}`);
      assert.equal(sent.origin, evil);
      assert.equal(resp.status(), 403, `cross-site ${path} answered ${resp.status()}: ${await resp.text()}`);
      assert.equal(executed(demo, "POST", "/api/transfers").length, 0, `cross-site ${path} released the transfer`);
    }
  } finally {
    srv.close();
  }

  // The hold is untouched: the victim's own step-up page collects it.
  const status = await demo.request("GET", `/.stepup/holds/${hold}`, {
    headers: { cookie: (await victim.context().cookies()).map((c) => `${c.name}=${c.value}`).join("; ") },
  });
  assert.equal(status.json().state, "satisfied", status.text);
  const collected = victim.waitForResponse((r) => isComplete(r, hold), { timeout: TIMEOUT });
  await victim.goto(`${demo.origin}/.stepup/holds/${hold}`);
  assert.equal((await collected).status(), 200);
  await expectHeading(victim, "Payment sent");
  assert.equal(executed(demo, "POST", "/api/transfers").length, 1);
}
