// A passkey assertion over one hold's challenge must not complete another
// hold of the same session. Two deletes are held (dave: A, mallory: B).
// When B's page asks for its challenge, the gateway issues it (so B has a
// pending challenge of its own), but the page is handed A's challenge
// instead, so the authenticator signs A's. The gateway must refuse that
// for B, and the very same assertion must then complete A: it was a valid
// proof, refused only for being bound to another hold.
// The passkey lives in the DevTools virtual authenticator (a software
// stand-in for a platform authenticator with user verification).

import assert from "node:assert/strict";
import { verifyAssertion } from "../lib/assertion.mjs";
import { addAuthenticator, newContext } from "../lib/browser.mjs";
import { cookieHeader, deleteUser, enrollPasskey, executed, expectHeading, signIn, usePasskey } from "../lib/flows.mjs";

export default async function ({ demo, browser, track, log }) {
  const ctx = await newContext(browser);
  track(ctx);
  const page = await ctx.newPage();
  await addAuthenticator(page);
  await enrollPasskey(page, demo, "admin");
  await signIn(page, demo);

  const a = await deleteUser(page, demo, "dave");
  const b = await deleteUser(page, demo, "mallory");
  assert.notEqual(a.hold, b.hold);
  log(`hold A ${a.hold}, hold B ${b.hold}`);

  const cookie = await cookieHeader(ctx);
  let issuedForB = null;
  let swapped = null;
  await page.route(`**/.stepup/holds/${b.hold}/webauthn**`, async (route) => {
    const url = new URL(route.request().url());
    const own = await demo.request("GET", url.pathname + url.search, { headers: { cookie } });
    issuedForB = own.status === 200 ? own.json() : { status: own.status, text: own.text };
    const other = await demo.request("GET", url.pathname.replace(b.hold, a.hold) + url.search, { headers: { cookie } });
    swapped = other.status === 200 ? other.json() : null;
    await route.fulfill({ status: other.status, contentType: "application/json", body: other.text });
  });
  let posted = null;
  page.on("request", (r) => {
    if (r.method() === "POST" && r.url().endsWith(`/holds/${b.hold}/complete`)) {
      posted = { body: r.postData(), type: r.headers()["content-type"] };
    }
  });

  const refused = await usePasskey(page, b.hold);
  assert.ok(issuedForB?.publicKey?.challenge, `hold B's own challenge was not issued: ${JSON.stringify(issuedForB)}`);
  assert.ok(swapped?.publicKey?.challenge, "hold A's challenge was not issued");
  assert.notEqual(issuedForB.publicKey.challenge, swapped.publicKey.challenge);
  assert.ok(posted?.body, "the page posted no completion");
  assert.ok(posted.body.includes("webauthn"), `the completion carries no passkey proof: ${posted.body}`);
  assert.ok(
    refused.status() >= 400 && refused.status() < 500,
    `hold B accepted an assertion over hold A's challenge (${refused.status()})`,
  );
  await page.getByRole("alert").waitFor();
  assert.equal(executed(demo, "POST", "/admin/users/mallory/delete").length, 0, "hold B was released");
  assert.equal(executed(demo, "POST", "/admin/users/dave/delete").length, 0, "hold A was released");
  log(`hold B refused it with ${refused.status()}`);
  const why = await demo.logLine(new RegExp(`proof rejected hold=${b.hold} method=webauthn`));
  assert.match(why, /reason=.*(pending challenge|another request)/i, why);

  // The same assertion, posted to the hold whose challenge it signed.
  const accepted = await demo.request("POST", `/.stepup/holds/${a.hold}/complete`, {
    headers: { cookie, "content-type": posted.type },
    body: posted.body,
  });
  assert.equal(accepted.status, 303, `hold A refused its own assertion: ${accepted.status} ${accepted.text}`);
  const deletes = executed(demo, "POST", "/admin/users/dave/delete");
  assert.equal(deletes.length, 1);
  const claims = await verifyAssertion(deletes[0].assertion, await demo.jwks());
  assert.equal(claims.txn, a.txn);
  assert.ok(claims.amr.includes("hwk") || claims.amr.includes("swk"), JSON.stringify(claims.amr));

  // Hold B is still there and takes a passkey proof over its own challenge.
  await page.unroute(`**/.stepup/holds/${b.hold}/webauthn**`);
  await page.goto(`${demo.origin}/.stepup/holds/${b.hold}`);
  await expectHeading(page, "Confirm this action");
  const released = await usePasskey(page, b.hold);
  assert.equal(released.status(), 303, `hold B refused a proper passkey proof: ${released.status()}`);
  assert.equal(executed(demo, "POST", "/admin/users/mallory/delete").length, 1);
}
