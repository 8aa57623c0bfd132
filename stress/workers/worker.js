#!/usr/bin/env node
'use strict';
// The Node worker of the stress suite (through bindings/node, koffi).
// Resolves repeatedly until HAP_STRESS_UNTIL_MS (once when unset) and prints one summary
// JSON line, the format every stress worker shares. Environment: HAP_STRESS_CONFIG,
// HAP_STRESS_START_AT_MS, HAP_STRESS_UNTIL_MS, HAP_STRESS_MIN_VALIDITY_MS,
// HAP_STRESS_PAUSE_MS (mean pause between resolves, default 20). Never prints a token.
// Needs `npm ci` in bindings/node and HAP_LIBRARY_PATH.

const crypto = require('node:crypto');
const path = require('node:path');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  const s = {
    lang: 'node', pid: process.pid, calls: 0, ok: 0, refreshed: 0, token_changes: 0,
    expired_served: 0, max_call_ms: 0, total_call_ms: 0, errors: {}, messages: [],
  };
  const note = (name, msg) => {
    s.errors[name] = (s.errors[name] || 0) + 1;
    if (s.messages.length < 5) s.messages.push(`${name}: ${msg}`.slice(0, 240));
  };
  const env = process.env;
  const until = Number(env.HAP_STRESS_UNTIL_MS || 0);
  const pause = Number(env.HAP_STRESS_PAUSE_MS || 20);
  const opts = env.HAP_STRESS_MIN_VALIDITY_MS
    ? { minValidityMs: Number(env.HAP_STRESS_MIN_VALIDITY_MS) } : undefined;
  let hap;
  let pool;
  try {
    hap = require(path.join(__dirname, '../../bindings/node/index.js'));
    pool = new hap.Pool(JSON.parse(env.HAP_STRESS_CONFIG));
  } catch (err) {
    s.calls += 1;
    note(err.code || err.name, err.message);
    process.stdout.write(`${JSON.stringify(s)}\n`, () => process.exit(1));
    return;
  }
  const start = Number(env.HAP_STRESS_START_AT_MS || 0);
  if (start > Date.now()) await sleep(start - Date.now());
  let last = null;
  for (;;) {
    const t0 = performance.now();
    let tok = null;
    try {
      tok = await pool.resolveToken(opts);
    } catch (err) {
      note(err instanceof hap.HapError ? err.code : (err.code || err.name), err.message);
    }
    const dt = Math.round(performance.now() - t0);
    s.calls += 1;
    s.total_call_ms += dt;
    s.max_call_ms = Math.max(s.max_call_ms, dt);
    if (tok) {
      s.ok += 1;
      if (tok.refreshed) s.refreshed += 1;
      const exp = tok.expiresAtMs;
      if (exp != null && Number(exp) <= Date.now()) s.expired_served += 1;
      const fp = crypto.createHash('sha256').update(tok.accessToken).digest('hex').slice(0, 16);
      if (last !== null && fp !== last) s.token_changes += 1;
      last = fp;
    }
    if (!until || Date.now() >= until) break;
    await sleep(Math.random() * 2 * pause);
  }
  pool.close();
  process.stdout.write(`${JSON.stringify(s)}\n`, () => process.exit(s.ok === s.calls ? 0 : 1));
}

main();
