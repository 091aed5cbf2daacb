// The screenshots in docs/screenshots/ (shown in the README): the
// enrollment page, the step-up page (passkey and code; waiting for an
// approval) and the approval pages (sign-in, the list, one hold). Each is
// checked for its heading before it is taken.
//
// So that a re-run writes the same pixels, the pages' clocks are frozen
// (JavaScript timers do not tick) and the values that differ on every run
// (the check code derived from the hold's txn, the time left, ages) are
// replaced with fixed sample values just before the picture is taken.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { addAuthenticator, newContext } from "../lib/browser.mjs";
import { deleteUser, expectHeading, signIn, submitHeld } from "../lib/flows.mjs";
import { totp } from "../lib/totp.mjs";

const OUT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../docs/screenshots");
const FROZEN = new Date("2026-03-02T09:41:00Z");

async function pinVolatile(page) {
  await page.evaluate(() => {
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const codes = new Map();
    const samples = ["K7QF-2MXP", "R4WD-9TLC", "H2NB-6VZE"];
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      n.textContent = n.textContent.replace(/\b[A-Z0-9]{4}-[A-Z0-9]{4}\b/g, (c) => {
        if (!codes.has(c)) codes.set(c, samples[codes.size % samples.length]);
        return codes.get(c);
      });
      n.textContent = n.textContent.replace(/\b\d+ ?s ago\b/g, "12 s ago");
    }
    for (const t of document.querySelectorAll('[role="timer"]')) t.textContent = "2:54";
    // Expiry times of enrollment links and the like.
    for (const t of document.querySelectorAll("time")) t.textContent = "09:56 UTC";
  });
}

async function shoot(page, name) {
  await pinVolatile(page);
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, `${name}.png`), animations: "disabled", caret: "hide" });
}

async function frozenPage(ctx) {
  const page = await ctx.newPage();
  await page.clock.install({ time: FROZEN });
  await page.clock.pauseAt(FROZEN);
  return page;
}

export default async function ({ demo, browser, track, log }) {
  const ctx = await newContext(browser);
  track(ctx);
  const page = await frozenPage(ctx);
  await addAuthenticator(page);

  await page.goto(await demo.enrollLink("admin"));
  await expectHeading(page, "Register a passkey");
  await shoot(page, "enroll");

  await signIn(page, demo);
  await deleteUser(page, demo, "carol");
  await page.getByRole("button", { name: "Use a passkey" }).waitFor();
  await page.getByRole("button", { name: "Confirm with code" }).waitFor();
  await shoot(page, "step-up");

  await page.goto(`${demo.origin}/admin/transfer`);
  await page.getByLabel("Amount").fill("25000");
  const transfer = await submitHeld(page, "/api/transfers", () => page.getByRole("button", { name: "Send" }).click());
  await page.getByRole("status").filter({ hasText: "Waiting for approval by 1" }).waitFor();
  await shoot(page, "step-up-approval");

  const approverCtx = await newContext(browser);
  track(approverCtx);
  const bob = await frozenPage(approverCtx);
  await bob.goto(`${demo.origin}/.stepup/holds`);
  await expectHeading(bob, "Approver sign-in");
  await shoot(bob, "approver-sign-in");
  await bob.getByLabel("Name").fill("bob");
  await bob.getByLabel("Authenticator code").fill(totp(demo.totpSecret("bob")));
  await bob.getByRole("button", { name: "Sign in with code" }).click();
  await expectHeading(bob, "Pending approvals");
  await shoot(bob, "approvals");
  await bob.locator(`a[href*="${transfer.hold}"]`).first().click();
  await bob.getByRole("button", { name: "Approve with code" }).waitFor();
  await shoot(bob, "approval");
  log(`wrote ${fs.readdirSync(OUT).join(", ")} to ${OUT}`);
}
