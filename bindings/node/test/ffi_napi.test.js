'use strict';
// Compatibility: code written against the ffi-napi API (the maintained
// @2060.io fork; the original ffi-napi 4.0.3 does not build on Node 20) opens,
// resolves, reports, reads status and frees libhap on the same fake server,
// alongside a koffi-backed hap-oauth Pool on the same files.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const hap = require('..');
const { startFakeServer, makeScene, EXPIRED, FIXTURE_ACCESS } = require('./helpers.js');

const COMPAT_DIR = path.join(__dirname, 'ffi-napi');
const installed = fs.existsSync(path.join(COMPAT_DIR, 'node_modules', '@2060.io', 'ffi-napi'));
const skip = !installed && process.env.HAP_SKIP_FFI_NAPI === '1' ? 'HAP_SKIP_FFI_NAPI=1' : false;

let server;
let ffiNapi;
before(async () => {
  if (skip) return;
  assert.ok(installed, `run \`npm ci\` in ${COMPAT_DIR} first (or set HAP_SKIP_FFI_NAPI=1)`);
  ffiNapi = require('./ffi-napi/hap_ffi_napi.js').open();
  server = await startFakeServer();
});
after(async () => {
  if (server) await server.stop();
});

test('ffi-napi sees the same library and ABI as koffi', { skip }, () => {
  assert.equal(ffiNapi.abiVersion(), (hap.abiVersion().major << 16) | hap.abiVersion().minor);
  assert.equal(ffiNapi.version(), hap.version());
});

test('ffi-napi: open, resolve (refresh + write-back), report, status, free', { skip }, async () => {
  await server.reset();
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const pool = ffiNapi.openPool(scene.config);
  let freed = false;
  try {
    const first = ffiNapi.resolve(pool);
    assert.equal(first.refreshed, true);
    assert.notEqual(first.access_token, FIXTURE_ACCESS);
    assert.equal(scene.readCredentials().claudeAiOauth.accessToken, first.access_token);
    assert.equal(scene.readCredentials().claudeAiOauth.subscriptionType, 'max');

    const second = await ffiNapi.resolveAsync(pool, { min_validity_ms: 60_000 });
    assert.equal(second.access_token, first.access_token);
    assert.equal(second.refreshed, false);
    assert.equal((await server.stats()).posts, 1);

    // A koffi Pool on the same files adopts the token ffi-napi refreshed.
    const koffiPool = new hap.Pool(scene.config);
    const viaKoffi = await koffiPool.resolveToken();
    koffiPool.close();
    assert.equal(viaKoffi.accessToken, first.access_token);
    assert.equal(viaKoffi.refreshed, false);

    const report = ffiNapi.report(pool, {
      credential_id: first.credential_id,
      status_code: 429,
      reason: 'rate_limit_error',
      retry_after_s: 120,
    });
    assert.equal(report.credential_id, first.credential_id);
    assert.equal(report.last_status, 'exhausted');
    assert.equal(typeof report.available_at_ms, 'number');

    const status = ffiNapi.status(pool);
    assert.equal(status.pool_path, scene.poolPath);
    const row = status.credentials.find((c) => c.credential_id === first.credential_id);
    assert.equal(row.last_status, 'exhausted');
    assert.doesNotMatch(JSON.stringify(status), /sk-ant-(oat|ort)01-/);

    // Errors arrive as status + error JSON through ffi-napi too.
    assert.throws(
      () => ffiNapi.report(pool, { credential_id: 'ffffff', status_code: 429 }),
      (err) => err.status === 8 && err.detail.name === 'HAP_STATUS_UNKNOWN_CREDENTIAL',
    );
    assert.throws(
      () => ffiNapi.resolve(pool),
      (err) => err.status === 2 && typeof err.detail.retry_at_ms === 'number',
    );

    ffiNapi.freePool(pool);
    freed = true;
  } finally {
    if (!freed) ffiNapi.freePool(pool);
    scene.cleanup();
  }
});

test('ffi-napi: hap_pool_open errors come back as error JSON', { skip }, () => {
  assert.throws(
    () => ffiNapi.openPool({ no_such_key: 1 }),
    (err) => err.status === 1 && /no_such_key/.test(err.detail.message),
  );
  // NULL config means "all defaults"; a NULL pool is fine to free.
  ffiNapi.freePool(null);
});
