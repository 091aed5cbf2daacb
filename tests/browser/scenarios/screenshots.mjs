// The screenshots shown in docs/pages.md (docs/screenshots/): the
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

// Tests never write tracked files: the test run points this at a scratch
// dir; only scripts/screenshots points it at docs/screenshots.
const OUT =
  process.env.STEPGATE_SCREENSHOTS_DIR ??
  path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../target/screenshots");
const FROZEN = new Date("2026-03-02T09:41:00Z");
// Sample check codes and times left: the delete holds for 3 minutes, the
// payment for 10.
const DELETE = { code: "K7QF-2MXP", timeLeft: "2:54" };
const PAYMENT = { code: "R4WD-9TLC", timeLeft: "9:41" };

async function pinVolatile(page, { code, timeLeft }) {
  await page.evaluate(
    ({ code, timeLeft }) => {
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        n.textContent = n.textContent
          .replace(/\b[A-Z0-9]{4}-[A-Z0-9]{4}\b/g, code)
          .replace(/\bsession[: ]\s*[A-Za-z0-9_-]{10,}/g, "session Q3vX8kLm2RtA");
      }
      for (const t of document.querySelectorAll('[role="timer"]')) t.textContent = timeLeft;
    },
    { code, timeLeft },
  );
}

/// A full-page picture at the context's 1200 px width, scale 1.
async function shoot(page, name, pins) {
  await pinVolatile(page, pins);
  fs.mkdirSync(OUT, { recursive: true });
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage: true, animations: "disabled", caret: "hide" });
}

async function frozenPage(ctx) {
  const page = await ctx.newPage();
  // Installed a minute early: pauseAt only moves forward.
  await page.clock.install({ time: new Date(FROZEN.getTime() - 60_000) });
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
  await shoot(page, "enroll", DELETE);

  await signIn(page, demo);
  await deleteUser(page, demo, "carol");
  await page.getByRole("button", { name: "Use a passkey" }).waitFor();
  await page.getByRole("button", { name: "Confirm with code" }).waitFor();
  await shoot(page, "step-up", DELETE);
  // Confirming with the code names admin on this session, so bob's pages
  // below show who asks.
  await page.getByLabel("Your user name").fill("admin");
  await page.getByLabel("Authenticator code").fill(totp(demo.totpSecret("admin")));
  await page.getByRole("button", { name: "Confirm with code" }).click();
  await expectHeading(page, "Users");

  await page.goto(`${demo.origin}/admin/transfer`);
  await page.getByLabel("Amount").fill("25000");
  const transfer = await submitHeld(page, "/api/transfers", () =>
    page.getByRole("button", { name: "Send payment" }).click(),
  );
  await page.getByRole("status").filter({ hasText: "Waiting for approval by 1" }).waitFor();
  await shoot(page, "step-up-approval", PAYMENT);

  const approverCtx = await newContext(browser);
  track(approverCtx);
  const bob = await frozenPage(approverCtx);
  await bob.goto(`${demo.origin}/.stepup/holds`);
  await expectHeading(bob, "Approver sign-in");
  await shoot(bob, "approver-sign-in", PAYMENT);
  await bob.getByLabel("Name").fill("bob");
  await bob.getByLabel("Authenticator code").fill(totp(demo.totpSecret("bob")));
  await bob.getByRole("button", { name: "Sign in with code" }).click();
  await expectHeading(bob, "Pending approvals");
  await shoot(bob, "approvals", PAYMENT);
  await bob.locator(`a[href*="${transfer.hold}"]`).first().click();
  await bob.getByRole("button", { name: "Approve with code" }).waitFor();
  await shoot(bob, "approval", PAYMENT);
  log(`wrote ${fs.readdirSync(OUT).join(", ")} to ${OUT}`);
}
