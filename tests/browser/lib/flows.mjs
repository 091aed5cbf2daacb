// What a person does in the demo, step by step, with the checks that each
// step really happened (the page they should see, the gateway's answer).

import assert from "node:assert/strict";
import { parseChallenge } from "./assertion.mjs";
import { totp } from "./totp.mjs";

export const TIMEOUT = 20_000;

/// Does `act` and returns the response that `match` picks out (both at
/// once, so a failing action does not leave a dangling wait behind).
export async function responseTo(page, match, act) {
  const [resp] = await Promise.all([page.waitForResponse(match, { timeout: TIMEOUT }), act()]);
  return resp;
}

export async function expectHeading(page, name) {
  await page.getByRole("heading", { level: 1, name }).waitFor({ timeout: TIMEOUT });
}

/// Signs in to the demo console (any password works there).
export async function signIn(page, demo) {
  await page.goto(`${demo.origin}/`);
  await expectHeading(page, "Sign in");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expectHeading(page, "Dashboard");
}

/// Opens the link `stepgate enroll webauthn USER` printed and registers
/// the page's virtual authenticator.
export async function enrollPasskey(page, demo, user) {
  const link = await demo.enrollLink(user);
  assert.ok(link.startsWith(`${demo.origin}/.stepup/enroll?token=`), `enrollment link ${link} is not on ${demo.origin}`);
  await page.goto(link);
  await expectHeading(page, "Register a passkey");
  await page.getByText(user, { exact: false }).first().waitFor();
  const resp = await responseTo(
    page,
    (r) => r.url().endsWith("/.stepup/enroll/finish"),
    () => page.getByRole("button", { name: "Register passkey" }).click(),
  );
  assert.equal(resp.status(), 200, `enroll/finish answered ${resp.status()}: ${await resp.text()}`);
  await page.getByRole("status").filter({ hasText: "Passkey registered" }).waitFor({ timeout: TIMEOUT });
  return link;
}

/// Submits a form on the console and returns the gateway's answer to that
/// POST with the hold it created (from the StepUp challenge header).
export async function submitHeld(page, pathPart, click) {
  const resp = await responseTo(page, (r) => r.request().method() === "POST" && r.url().includes(pathPart), click);
  assert.equal(resp.status(), 401, `the gateway did not hold ${pathPart}: ${resp.status()}`);
  const { hold, txn } = parseChallenge(await resp.headerValue("www-authenticate"));
  await expectHeading(page, "Confirm this action");
  return { resp, hold, txn };
}

/// Opens the console's user list and presses Delete next to `user`.
export async function deleteUser(page, demo, user) {
  await page.goto(`${demo.origin}/admin/users`);
  await expectHeading(page, "Users");
  return submitHeld(page, `/admin/users/${user}/delete`, () =>
    page.getByRole("button", { name: `Delete ${user}`, exact: true }).click(),
  );
}

/// Deletes `user` and confirms with admin's code. From then on the gateway
/// knows who is behind this session, which a payment needs: approvals
/// alone decide it, and the gateway holds no such request from a session
/// nobody was named on (its requester could be the approver).
export async function confirmDeleteAsAdmin(page, demo, user) {
  const del = await deleteUser(page, demo, user);
  await page.getByLabel("Your user name").fill("admin");
  await page.getByLabel("Authenticator code").fill(totp(demo.totpSecret("admin")));
  const done = await responseTo(
    page,
    (r) => isComplete(r, del.hold),
    () => page.getByRole("button", { name: "Confirm with code" }).click(),
  );
  assert.equal(done.status(), 303, `the delete's completion got ${done.status()}`);
  await expectDeleted(page, user);
}

/// After a released delete: the console's user list, without `user`,
/// saying it was deleted.
export async function expectDeleted(page, user) {
  await expectHeading(page, "Users");
  assert.equal(new URL(page.url()).pathname, "/admin/users");
  await page.getByText(`User ${user} was deleted.`).waitFor();
  assert.equal(await page.getByRole("button", { name: `Delete ${user}`, exact: true }).count(), 0, `${user} is still listed`);
}

export function isComplete(r, hold) {
  return r.request().method() === "POST" && r.url().endsWith(`/.stepup/holds/${hold}/complete`);
}

/// The console's log lines for `method path`.
export function executed(demo, method, path) {
  return demo.consoleLog().filter((l) => l.method === method && l.path === path);
}

/// The browser context's cookies as a Cookie header, for requests the test
/// makes on the session's behalf.
export async function cookieHeader(ctx) {
  return (await ctx.cookies()).map((c) => `${c.name}=${c.value}`).join("; ");
}

/// Presses "Use a passkey" on the step-up page (filling the user name
/// first where the page asks for it) and returns the gateway's answer to
/// the completion the page then submits.
export async function usePasskey(page, hold, user = "admin") {
  const fields = page.getByLabel("Your user name", { exact: true });
  for (let i = 0; i < (await fields.count()); i++) {
    if (await fields.nth(i).isVisible()) await fields.nth(i).fill(user);
  }
  return responseTo(
    page,
    (r) => isComplete(r, hold),
    () => page.getByRole("button", { name: "Use a passkey" }).click(),
  );
}
