// Runs one browser scenario against a fresh `stepgate demo`:
//   STEPGATE_BIN=target/debug/stepgate node tests/browser/run.mjs <scenario>
// tests/browser.rs runs each scenario as a cargo test. Exit status 0 only
// when every check in the scenario held.

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Demo } from "./lib/demo.mjs";
import { launch } from "./lib/browser.mjs";
import { rfc6238SelfCheck } from "./lib/totp.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const name = process.argv[2];
const file = path.join(here, "scenarios", `${name}.mjs`);
if (!name || !fs.existsSync(file)) {
  const known = fs.readdirSync(path.join(here, "scenarios")).map((f) => f.replace(/\.mjs$/, ""));
  console.error(`usage: node run.mjs <scenario>; scenarios: ${known.join(", ")}`);
  process.exit(2);
}
const scenario = (await import(file)).default;

rfc6238SelfCheck();
let demo;
let browser;
const pages = [];
try {
  demo = await Demo.start();
  browser = await launch([demo.spkiHash()]);
  // Every page a scenario opens is remembered, so a failure can show it.
  browser.on("disconnected", () => {});
  const track = (ctx) => ctx.on("page", (p) => pages.push(p));
  await scenario({ demo, browser, track, log: (...a) => console.log(`  ${name}:`, ...a) });
  console.log(`ok ${name}`);
} catch (e) {
  process.exitCode = 1;
  console.error(`FAILED ${name}: ${e?.stack ?? e}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `stepgate-browser-${name}-`));
  for (const [i, p] of pages.entries()) {
    try {
      if (p.isClosed()) continue;
      await p.screenshot({ path: path.join(dir, `page-${i}.png`), fullPage: true, timeout: 5000 });
      console.error(`  page ${i}: ${p.url()} (screenshot ${dir}/page-${i}.png)`);
      console.error(`  text: ${(await p.locator("body").innerText({ timeout: 2000 })).slice(0, 1500)}`);
    } catch {}
  }
  if (demo) {
    console.error(`--- demo stdout\n${demo.stdout.replace(/^[ █▀▄]*\n/gm, "")}\n--- demo stderr (last 6000 chars)\n${demo.stderr.slice(-6000)}`);
    console.error(`--- console.jsonl\n${JSON.stringify(demo.consoleLog?.() ?? [], null, 1).slice(0, 4000)}`);
  }
} finally {
  await browser?.close().catch(() => {});
  await demo?.stop().catch(() => {});
}
