// `stepgate demo` started the way a user starts it: the built binary in a
// fresh working directory, which then holds ./stepgate-demo/ (certificates,
// keys, routes.yaml, the user store and the console's request log).

import { spawn, execFile } from "node:child_process";
import { X509Certificate, createHash } from "node:crypto";
import fs from "node:fs";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";

function stepgateBin() {
  const bin = process.env.STEPGATE_BIN;
  if (!bin || !fs.existsSync(bin)) {
    throw new Error(`STEPGATE_BIN must name the built stepgate binary (got ${bin ?? "nothing"}); run these tests through \`cargo test --test browser\``);
  }
  return bin;
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/// The secret of every `otpauth://` URI the demo printed, by account name.
function otpSecrets(text) {
  const out = {};
  for (const m of text.matchAll(/otpauth:\/\/totp\/[^\s:]*:([^?\s]+)\?\S*?secret=([A-Z2-7]+)/g)) {
    out[decodeURIComponent(m[1])] = m[2];
  }
  return out;
}

export class Demo {
  constructor(cwd, port, child) {
    this.cwd = cwd;
    this.port = port;
    this.child = child;
    this.stdout = "";
    this.stderr = "";
    this.origin = `https://localhost:${port}`;
    this.dir = path.join(cwd, "stepgate-demo");
    child.stdout.on("data", (d) => (this.stdout += d));
    child.stderr.on("data", (d) => (this.stderr += d));
    this.exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  }

  static async start() {
    const bin = stepgateBin();
    let lastError;
    // The port is chosen free and then handed over, so another process
    // can take it in between: try again with a new one.
    for (let attempt = 0; attempt < 3; attempt++) {
      const cwd = fs.mkdtempSync(path.join(os.tmpdir(), "stepgate-browser-"));
      const port = await freePort();
      const child = spawn(bin, ["demo", "--port", String(port)], {
        cwd,
        stdio: ["ignore", "pipe", "pipe"],
        env: { ...process.env, NO_COLOR: "1", RUST_LOG: process.env.RUST_LOG ?? "info" },
      });
      const demo = new Demo(cwd, port, child);
      try {
        await demo.#ready();
        return demo;
      } catch (e) {
        lastError = e;
        await demo.stop();
      }
    }
    throw lastError;
  }

  async #ready() {
    const deadline = Date.now() + 60_000;
    let exited = null;
    this.exited.then((x) => (exited = x));
    while (Date.now() < deadline) {
      if (exited) throw new Error(`stepgate demo exited (${JSON.stringify(exited)}):\n${this.stdout}\n${this.stderr}`);
      // The banner is complete once the output stops growing.
      const seen = this.stdout.length;
      if (/console \(through the gateway\)/.test(this.stdout) && (await this.#listening()) && (await this.#quiet(seen))) {
        this.certPem = fs.readFileSync(path.join(this.dir, "certs/gateway.pem"), "utf8");
        this.keyPem = fs.readFileSync(path.join(this.dir, "certs/gateway-key.pem"), "utf8");
        return;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`stepgate demo did not come up in 60 s:\n${this.stdout}\n${this.stderr}`);
  }

  async #quiet(seen) {
    await new Promise((r) => setTimeout(r, 300));
    return this.stdout.length === seen;
  }

  #listening() {
    return new Promise((resolve) => {
      const s = net.connect(this.port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
  }

  /// base64(SHA-256(SubjectPublicKeyInfo)) of the gateway's certificate:
  /// what Chromium's --ignore-certificate-errors-spki-list takes to treat
  /// this one certificate as trusted.
  spkiHash() {
    const spki = new X509Certificate(this.certPem).publicKey.export({ type: "spki", format: "der" });
    return createHash("sha256").update(spki).digest("base64");
  }

  totpSecret(user) {
    const s = otpSecrets(this.stdout)[user];
    if (!s) throw new Error(`the demo printed no TOTP secret for ${user}:\n${this.stdout}`);
    return s;
  }

  /// The approver API key the demo printed for bob.
  apiKey(user) {
    const m = this.stdout.match(new RegExp(`API key for \`?${user}\`?[^:]*:\\s*(\\S+)`));
    if (!m) throw new Error(`the demo printed no API key for ${user}:\n${this.stdout}`);
    return m[1];
  }

  /// Runs the stepgate CLI in the demo's working directory.
  cli(args) {
    return new Promise((resolve) => {
      execFile(stepgateBin(), args, { cwd: this.cwd, env: { ...process.env, NO_COLOR: "1" } }, (err, stdout, stderr) =>
        resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr }),
      );
    });
  }

  /// `stepgate enroll webauthn USER --config stepgate-demo/routes.yaml`,
  /// as the demo tells a user to run it; returns the printed link.
  async enrollLink(user) {
    const r = await this.cli(["enroll", "webauthn", user, "--config", "stepgate-demo/routes.yaml"]);
    if (r.code !== 0) throw new Error(`stepgate enroll webauthn ${user} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
    const m = r.stdout.match(/https:\/\/\S+\/enroll\?token=[A-Za-z0-9_-]+/);
    if (!m) throw new Error(`stepgate enroll webauthn printed no enrollment link:\n${r.stdout}`);
    return m[0];
  }

  /// Every request the console executed, in order (the console writes
  /// one JSON line per privileged request to state/console.jsonl).
  consoleLog() {
    const file = path.join(this.dir, "state/console.jsonl");
    if (!fs.existsSync(file)) return [];
    return fs
      .readFileSync(file, "utf8")
      .split("\n")
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l));
  }

  /// A request to the gateway from outside the browser (Node's TLS client
  /// trusting exactly the demo's certificate).
  request(method, urlPath, { headers = {}, body } = {}) {
    return new Promise((resolve, reject) => {
      const req = https.request(
        {
          host: "127.0.0.1",
          servername: "localhost",
          port: this.port,
          method,
          path: urlPath,
          ca: this.certPem,
          headers: { host: `localhost:${this.port}`, ...headers },
        },
        (res) => {
          let text = "";
          res.setEncoding("utf8");
          res.on("data", (d) => (text += d));
          res.on("end", () =>
            resolve({
              status: res.statusCode,
              headers: res.headers,
              text,
              json() {
                return JSON.parse(text);
              },
            }),
          );
        },
      );
      req.on("error", reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  /// Waits for the gateway's log (stderr) to show a line matching `re`.
  async logLine(re, ms = 5000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = this.stderr.split("\n").find((l) => re.test(l));
      if (line) return line;
      if (Date.now() > deadline) throw new Error(`the gateway never logged ${re}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async jwks() {
    const r = await this.request("GET", "/.stepup/jwks.json");
    if (r.status !== 200) throw new Error(`GET /.stepup/jwks.json: ${r.status} ${r.text}`);
    return r.json();
  }

  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill("SIGTERM");
      const t = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
      await this.exited;
      clearTimeout(t);
    }
    if (!process.env.STEPGATE_KEEP_DEMO) fs.rmSync(this.cwd, { recursive: true, force: true });
  }
}
