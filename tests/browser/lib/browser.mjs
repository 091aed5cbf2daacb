// Headless Debian Chromium driven by playwright-core (which never downloads
// a browser of its own here), plus the DevTools virtual authenticator.

import fs from "node:fs";
import { chromium } from "playwright-core";

/// Where Chromium is: Debian's package, or STEPGATE_CHROMIUM. Missing is a
/// failure, not a skip: CI installs it, and a skipped browser test would
/// look like a passing one.
export function chromiumPath() {
  const p = process.env.STEPGATE_CHROMIUM || "/usr/bin/chromium";
  if (!fs.existsSync(p)) {
    throw new Error(`Chromium not found at ${p}: install Debian's \`chromium\` package (.ci/run does) or set STEPGATE_CHROMIUM`);
  }
  return p;
}

const FLAGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  // Without these Chromium keeps trying to reach Google's services, which
  // this machine's network refuses.
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--font-render-hinting=none",
];

/// A browser that trusts exactly the demo's self-signed certificate, by its
/// public key. Chromium then treats the connection as valid TLS, so the
/// page is a secure context without certificate errors (which WebAuthn
/// would otherwise refuse); nothing else is trusted that would not be.
/// `extraArgs` go to Chromium as they are (say, --host-resolver-rules).
export async function launch(spkiHashes, extraArgs = []) {
  // Playwright gives each launch a fresh temporary --user-data-dir.
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [...FLAGS, `--ignore-certificate-errors-spki-list=${spkiHashes.join(",")}`, ...extraArgs],
  });
}

/// A fixed viewport, scale, locale and time zone, so screenshots come out
/// the same on every run.
export async function newContext(browser, options = {}) {
  const ctx = await browser.newContext({
    viewport: { width: 1200, height: 800 },
    deviceScaleFactor: 1,
    locale: "en-US",
    timezoneId: "UTC",
    colorScheme: "light",
    reducedMotion: "reduce",
    ...options,
  });
  ctx.setDefaultTimeout(20_000);
  return ctx;
}

/// A requester's page and an approver's page in two separate contexts, so
/// they share no cookies; both contexts are handed to `track` to be closed.
export async function requesterAndApprover(browser, track) {
  const requesterCtx = await newContext(browser);
  const approverCtx = await newContext(browser);
  track(requesterCtx);
  track(approverCtx);
  return { req: await requesterCtx.newPage(), approver: await approverCtx.newPage() };
}

/// The DevTools virtual authenticator: a software stand-in for a platform
/// authenticator (CTAP2, internal transport, resident keys) that performs
/// user verification, attached to `page`'s tab.
export async function addAuthenticator(page, { isUserVerified = true } = {}) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable", { enableUI: false });
  const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified,
      automaticPresenceSimulation: true,
    },
  });
  return {
    cdp,
    id: authenticatorId,
    async credentials() {
      return (await cdp.send("WebAuthn.getCredentials", { authenticatorId })).credentials;
    },
  };
}
