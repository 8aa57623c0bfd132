'use strict';
// Scenarios: resolve a valid token, refresh an expired one and write it back,
// report a failure, read status; and the secret never shows in any rendering.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const hap = require('..');
const { startFakeServer, makeScene, EXPIRED, FIXTURE_ACCESS, FIXTURE_REFRESH } = require('./helpers.js');

let server;
before(async () => {
  server = await startFakeServer();
});
after(async () => {
  await server.stop();
});

const TOKEN_PATTERN = /sk-ant-(oat|ort)01-/;

test('a valid token in the credentials file is returned as is, with no POST', async () => {
  await server.reset();
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    const token = await pool.resolveToken();
    assert.ok(token instanceof hap.Token);
    assert.ok(token instanceof hap.TokenResult, 'the deprecated name still works');
    assert.equal(token.accessToken, FIXTURE_ACCESS);
    assert.equal(token.refreshed, false);
    assert.equal(token.source, 'claude_code');
    assert.equal(token.authType, 'oauth');
    assert.match(token.credentialId, /^[0-9a-f]{6}$/);
    assert.equal(typeof token.expiresAtMs, 'number');
    assert.equal((await server.stats()).posts, 0);

    // adopt_external_logins seeded a borrowed row: status but never a token.
    const rows = scene.readPool().credential_pool.anthropic;
    assert.equal(rows.length, 1);
    assert.equal(rows[0].source, 'claude_code');
    assert.doesNotMatch(fs.readFileSync(scene.poolPath, 'utf8'), TOKEN_PATTERN);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('an expired token is refreshed with one POST and written back without losing other keys', async () => {
  await server.reset();
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const pool = new hap.Pool(scene.config);
  try {
    const before = Date.now();
    const token = await pool.resolveToken();
    assert.equal(token.refreshed, true);
    assert.notEqual(token.accessToken, FIXTURE_ACCESS);
    assert.match(token.accessToken, /^sk-ant-oat01-fake-/);
    assert.ok(token.expiresAtMs > before + 3_000_000, 'expires_in 3600 s from now');

    const stats = await server.stats();
    assert.equal(stats.posts, 1);

    const creds = scene.readCredentials();
    assert.equal(creds.claudeAiOauth.accessToken, token.accessToken);
    assert.notEqual(creds.claudeAiOauth.refreshToken, FIXTURE_REFRESH);
    assert.equal(creds.claudeAiOauth.expiresAt, token.expiresAtMs);
    assert.equal(creds.claudeAiOauth.subscriptionType, 'max');
    assert.equal(creds.claudeAiOauth.rateLimitTier, 'default_claude_max_20x');
    assert.deepEqual(creds.otherTool, { keep: true });
    assert.equal(fs.statSync(scene.credentialsPath).mode & 0o777, 0o600);

    // The next resolve, sync this time, finds the fresh token: no second POST.
    const again = pool.resolveTokenSync();
    assert.equal(again.accessToken, token.accessToken);
    assert.equal(again.refreshed, false);
    assert.equal((await server.stats()).posts, 1);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('forceRefresh and minValidityMs reach libhap as force_refresh and min_validity_ms', async () => {
  await server.reset();
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    const first = pool.resolveTokenSync({ minValidityMs: 60_000 });
    assert.equal(first.refreshed, false);
    const forced = await pool.resolveToken({ forceRefresh: true, credentialId: first.credentialId });
    assert.equal(forced.refreshed, true);
    assert.notEqual(forced.accessToken, first.accessToken);
    // Asking for more validity than the fresh token has forces another refresh.
    const longer = pool.resolveTokenSync({ minValidityMs: 2 * 3_600_000 });
    assert.equal(longer.refreshed, true);
    assert.equal((await server.stats()).posts, 2);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('reportFailure benches the credential and status() shows it, camelCased and secret-free', async () => {
  await server.reset();
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    const token = await pool.resolveToken();
    const resetAt = new Date(Date.now() + 600_000);
    const report = await pool.reportFailure({
      credentialId: token.credentialId,
      statusCode: 429,
      reason: 'rate_limit_error',
      message: 'slow down',
      resetAt,
    });
    assert.equal(report.credentialId, token.credentialId);
    assert.equal(report.lastStatus, 'exhausted');
    assert.equal(typeof report.availableAtMs, 'number');
    // The Date went over as epoch ms; libhap caps the bench of a pool's only credential.
    assert.ok(report.availableAtMs > Date.now() && report.availableAtMs <= resetAt.getTime() + 1000);

    const status = pool.status();
    assert.equal(status.provider, 'anthropic');
    assert.equal(status.poolPath, scene.poolPath);
    assert.equal(status.credentialsPath, scene.credentialsPath);
    const row = status.credentials.find((c) => c.credentialId === token.credentialId);
    assert.equal(row.lastStatus, 'exhausted');
    assert.equal(row.available, false);
    assert.equal(row.lastErrorCode, 429);
    assert.equal(typeof status.counters.resolves, 'number');
    assert.doesNotMatch(JSON.stringify(status), TOKEN_PATTERN);

    // The only credential is benched: nothing to hand out, and when it comes back.
    await assert.rejects(pool.resolveToken(), (err) => {
      assert.ok(err instanceof hap.NoCredentialError);
      assert.equal(typeof err.retryAtMs, 'number');
      return true;
    });

    // The sync flavour gives the same answer shape.
    const again = pool.reportFailureSync({ credentialId: token.credentialId, statusCode: 429, retryAfterS: 30 });
    assert.equal(again.lastStatus, 'exhausted');
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('the access token is readable but absent from inspect, console, JSON, spread and keys', async () => {
  await server.reset();
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    const token = await pool.resolveToken();
    assert.equal(token.accessToken, FIXTURE_ACCESS);
    const renderings = [
      util.inspect(token),
      util.inspect(token, { showHidden: true, depth: Infinity }),
      util.inspect({ nested: [token] }, { depth: 5 }),
      util.format('%o %O %j %s', token, token, token, token),
      JSON.stringify(token),
      JSON.stringify({ token }),
      JSON.stringify({ ...token }),
      String(token),
      `${token}`,
      Object.keys(token).join(','),
      util.inspect(structuredClone({ ...token })),
      util.inspect(pool),
    ];
    for (const text of renderings) {
      assert.ok(!text.includes(FIXTURE_ACCESS), `secret leaked into: ${text}`);
      assert.doesNotMatch(text, TOKEN_PATTERN);
    }
    assert.match(util.inspect(token), /accessToken: '\[redacted\]'/);
    assert.match(util.inspect(token), /credentialId: '[0-9a-f]{6}'/);
    assert.deepEqual(Object.keys(JSON.parse(JSON.stringify(token))).sort(), [
      'authType',
      'credentialId',
      'expiresAtMs',
      'label',
      'refreshed',
      'source',
    ]);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('close() is idempotent; every call after it throws PoolClosedError', async () => {
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    pool.resolveTokenSync();
    assert.equal(pool.closed, false);
    pool.close();
    pool.close();
    assert.equal(pool.closed, true);
    assert.throws(() => pool.resolveTokenSync(), hap.PoolClosedError);
    assert.throws(() => pool.status(), hap.PoolClosedError);
    assert.throws(() => pool.reportFailureSync({ credentialId: 'abc123', statusCode: 429 }), hap.PoolClosedError);
    await assert.rejects(pool.resolveToken(), hap.PoolClosedError);
    await assert.rejects(pool.reportFailure({ credentialId: 'abc123', statusCode: 429 }), hap.PoolClosedError);
  } finally {
    scene.cleanup();
  }
});

test('close() while a call runs lets it finish, then frees; queued calls reject', async () => {
  await server.reset();
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const pool = new hap.Pool(scene.config, { maxConcurrentCalls: 1 });
  try {
    await server.script({ delay_ms: 300 });
    const running = pool.resolveToken();
    const queued = assert.rejects(pool.resolveToken(), hap.PoolClosedError);
    // Let the first call reach the worker thread before closing.
    await new Promise((resolve) => setTimeout(resolve, 50));
    pool.close();
    const token = await running;
    assert.equal(token.refreshed, true);
    await queued;
  } finally {
    scene.cleanup();
  }
});

test('camelCase and snake_case config keys are both accepted; bad arguments are TypeErrors', () => {
  const scene = makeScene(server);
  try {
    const camel = new hap.Pool({
      poolPath: scene.poolPath,
      credentialsPath: scene.credentialsPath,
      tokenUrls: [server.tokenUrl],
      lockTimeoutMs: 5000,
      claudeCodeLock: true,
    });
    assert.equal(camel.status().poolPath, scene.poolPath);
    camel.close();
    const raw = new hap.Pool(JSON.stringify(scene.config));
    assert.equal(raw.status().credentialsPath, scene.credentialsPath);
    raw.close();
    assert.throws(() => new hap.Pool(42), TypeError);
    assert.throws(() => new hap.Pool(scene.config, { maxConcurrentCalls: 0 }), TypeError);
    const pool = new hap.Pool(scene.config);
    assert.throws(() => pool.resolveTokenSync([1]), TypeError);
    assert.throws(() => pool.reportFailureSync(), TypeError);
    pool.close();
  } finally {
    scene.cleanup();
  }
});

test('version, abiVersion, libraryPath and statusName describe the loaded library', () => {
  assert.match(hap.version(), /^hap /);
  assert.deepEqual(hap.abiVersion(), { major: 0, minor: hap.abiVersion().minor });
  assert.ok(hap.abiVersion().minor >= 1);
  assert.ok(fs.existsSync(hap.libraryPath()));
  if (process.env.HAP_LIBRARY_PATH) assert.equal(hap.libraryPath(), path.resolve(process.env.HAP_LIBRARY_PATH));
  assert.equal(hap.statusName(2), 'HAP_STATUS_NO_CREDENTIAL');
  assert.equal(hap.statusName(9999), 'HAP_STATUS_UNKNOWN');
});
