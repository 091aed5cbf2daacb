// RFC 6238 TOTP (SHA-1, 6 digits, 30 s), written here from the RFC so the
// codes the browser types come from outside stepgate.

import { createHmac } from "node:crypto";

function base32(s) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of s.replace(/=+$/, "").toUpperCase()) {
    const i = alphabet.indexOf(c);
    if (i < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | i;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/// The code for the 30-second step `offset` steps from now (the gateway
/// accepts one step either side and each step once per user, so a second
/// code in the same half minute is the next step's).
export function totp(secret, offset = 0, now = Date.now()) {
  const step = BigInt(Math.floor(now / 1000 / 30) + offset);
  const msg = Buffer.alloc(8);
  msg.writeBigUInt64BE(step);
  const mac = createHmac("sha1", base32(secret)).update(msg).digest();
  const o = mac[mac.length - 1] & 0x0f;
  const n = (mac.readUInt32BE(o) & 0x7fffffff) % 1_000_000;
  return String(n).padStart(6, "0");
}

export function rfc6238SelfCheck() {
  // RFC 6238 Appendix B, SHA-1 seed "12345678901234567890", T = 59 s.
  const seed = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
  if (totp(seed, 0, 59_000) !== "287082") throw new Error("TOTP implementation disagrees with RFC 6238");
}
