#!/usr/bin/env node
'use strict';
// README demo worker: resolve once through hap-oauth and print one JSON line.
//   HAP_DEMO_CONFIG='{"pool_path": ...}' [HAP_DEMO_START_AT_MS=<epoch ms>] node demo_worker.js
// Exit 0 with {"lang","pid","credential_id","refreshed","token_sha256"}, or
// exit 1 with {"lang","pid","error","message"}.

const crypto = require('node:crypto');

function emit(line, code) {
  process.stdout.write(`${JSON.stringify(line)}\n`, () => process.exit(code));
}

function fail(error, message) {
  emit({ lang: 'node', pid: process.pid, error, message }, 1);
}

async function main() {
  let hap;
  let config;
  try {
    hap = require('./index.js');
    config = JSON.parse(process.env.HAP_DEMO_CONFIG || '{}');
  } catch (err) {
    return fail(err.code || 'HAP_STATUS_INVALID_ARGUMENT', err.message);
  }
  const startAt = Number(process.env.HAP_DEMO_START_AT_MS || 0);
  if (startAt > Date.now()) await new Promise((resolve) => setTimeout(resolve, startAt - Date.now()));

  let pool;
  try {
    pool = new hap.Pool(config);
    const token = await pool.resolveToken();
    const digest = crypto.createHash('sha256').update(token.accessToken).digest('hex').slice(0, 12);
    emit(
      {
        lang: 'node',
        pid: process.pid,
        credential_id: token.credentialId,
        refreshed: token.refreshed,
        token_sha256: digest,
      },
      0,
    );
  } catch (err) {
    fail(err instanceof hap.HapError ? err.code : err.code || 'HAP_STATUS_UNKNOWN', err.message);
  } finally {
    if (pool) pool.close();
  }
}

main();
