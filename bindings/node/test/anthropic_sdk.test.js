'use strict';
// The recipe of the README, run for real: the official @anthropic-ai/sdk
// (installed from npm into test/anthropic-sdk by ci.sh) with hap-oauth's
// createFetch, against the fake Messages API and the fake token server, both
// on 127.0.0.1, with store files in temp dirs.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');
const hap = require('..');
const { startFakeServer, makeScene, EXPIRED, FIXTURE_ACCESS } = require('./helpers.js');
const { FakeMessagesApi } = require('./fake_messages_api.js');

const SDK_DIR = path.join(__dirname, 'anthropic-sdk');
const sdkInstalled = fs.existsSync(path.join(SDK_DIR, 'node_modules', '@anthropic-ai', 'sdk'));

let server;
let api;
let Anthropic;
before(async () => {
  assert.ok(sdkInstalled, `run \`npm ci\` in ${SDK_DIR} first (ci.sh does)`);
  Anthropic = createRequire(path.join(SDK_DIR, 'package.json'))('@anthropic-ai/sdk');
  // A user with an API key in the environment: the recipe must not send it.
  process.env.ANTHROPIC_API_KEY = 'sk-ant-api03-fake-from-env';
  server = await startFakeServer();
  api = await FakeMessagesApi.start();
});
after(async () => {
  delete process.env.ANTHROPIC_API_KEY;
  if (api) await api.stop();
  if (server) await server.stop();
});

// The README's recipe, with the test's base URL and retry budget.
function recipeClient(pool, { maxRetries = 2 } = {}) {
  return new Anthropic({
    baseURL: api.base,
    // Placeholder: any credential option stops the SDK from reading
    // ANTHROPIC_API_KEY or a credentials profile of its own; createFetch
    // replaces the Authorization header on every request.
    authToken: 'hap',
    fetch: hap.createFetch({ pool }),
    maxRetries,
  });
}

const ask = (client, options) =>
  client.messages.create({ model: 'claude-fake', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }, options);

function assertAuthHeaders(req) {
  assert.match(req.bearer, /^sk-ant-oat01-fake-/);
  assert.ok(req.betas.includes(hap.OAUTH_BETA), `anthropic-beta: ${req.anthropicBeta}`);
  assert.equal(req.xApiKey, false, 'no x-api-key');
}

async function withScene(sceneOptions, fn) {
  await server.reset();
  api.reset();
  const scene = makeScene(server, sceneOptions);
  const pool = new hap.Pool(scene.config);
  try {
    await fn(scene, pool);
  } finally {
    pool.close();
    scene.cleanup();
  }
}

test('an expired login is refreshed once; the request carries Bearer and the beta header, no x-api-key', async () => {
  await withScene({ expiresAtMs: EXPIRED() }, async (scene, pool) => {
    const client = recipeClient(pool);
    const msg = await ask(client);
    assert.equal(msg.content[0].text, 'ok');
    assert.equal((await server.stats()).posts, 1);
    assert.equal(api.requests.length, 1);
    assertAuthHeaders(api.requests[0]);
    assert.equal(api.requests[0].bearer, scene.readCredentials().claudeAiOauth.accessToken);
    assert.notEqual(api.requests[0].bearer, FIXTURE_ACCESS);

    // A beta the caller asks for is kept beside hap's; the next call reuses the token.
    await ask(client, { headers: { 'anthropic-beta': 'files-api-2025-04-14' } });
    assert.deepEqual(api.requests[1].betas.sort(), ['files-api-2025-04-14', hap.OAUTH_BETA].sort());
    assert.equal(api.requests[1].bearer, api.requests[0].bearer);
    assert.equal((await server.stats()).posts, 1);
  });
});

test('a 401 leads to exactly one refresh and one retry with the new token', async () => {
  await withScene({}, async (scene, pool) => {
    api.rejected.add(FIXTURE_ACCESS); // revoked server-side, still "valid" by its expiry
    const msg = await ask(recipeClient(pool));
    assert.equal(msg.content[0].text, 'ok');
    assert.equal((await server.stats()).posts, 1);
    assert.equal(api.requests.length, 2);
    assert.equal(api.requests[0].bearer, FIXTURE_ACCESS);
    const fresh = scene.readCredentials().claudeAiOauth.accessToken;
    assert.notEqual(fresh, FIXTURE_ACCESS);
    assert.equal(api.requests[1].bearer, fresh);
    api.requests.forEach(assertAuthHeaders);
    assert.equal(pool.status().credentials[0].lastStatus, 'ok');
  });
});

test('a 401 that persists: one refresh, one retry, then the SDK raises AuthenticationError', async () => {
  await withScene({}, async (scene, pool) => {
    api.rejectAll = true;
    await assert.rejects(ask(recipeClient(pool)), (err) => err instanceof Anthropic.AuthenticationError && err.status === 401);
    assert.equal((await server.stats()).posts, 1, 'one refresh, not one per 401');
    assert.equal(api.requests.length, 2);
    assert.notEqual(api.requests[0].bearer, api.requests[1].bearer);
    // The refreshed token was refused too: reported, and the credential benched.
    const row = pool.status().credentials[0];
    assert.equal(row.lastStatus, 'exhausted');
    assert.equal(row.lastErrorCode, 401);
  });
});

test('8 concurrent calls hitting one revoked token: one refresh, every call succeeds, nothing benched', async () => {
  await withScene({}, async (scene, pool) => {
    api.rejected.add(FIXTURE_ACCESS);
    const client = recipeClient(pool);
    const msgs = await Promise.all(Array.from({ length: 8 }, () => ask(client)));
    assert.ok(msgs.every((m) => m.content[0].text === 'ok'));
    assert.equal((await server.stats()).posts, 1);
    const fresh = scene.readCredentials().claudeAiOauth.accessToken;
    const byToken = api.bearers().filter((b) => b === fresh).length;
    assert.equal(byToken, 8, 'every call ends with the refreshed token');
    assert.ok(api.requests.length <= 16, `${api.requests.length} requests`);
    assert.equal(pool.status().credentials[0].lastStatus, 'ok');
  });
});

test('a 429 on the only credential is handed back: the SDK retries by its own policy, 1 + maxRetries requests', async () => {
  await withScene({}, async (scene, pool) => {
    api.rateLimitAll = { 'retry-after': '0' };
    await assert.rejects(
      ask(recipeClient(pool, { maxRetries: 2 })),
      (err) => err instanceof Anthropic.RateLimitError && err.status === 429,
    );
    assert.equal(api.requests.length, 3, '1 + maxRetries, no retries of our own');
    assert.deepEqual(
      api.requests.map((r) => r.retryCount),
      ['0', '1', '2'],
    );
    assert.equal((await server.stats()).posts, 0, 'a 429 is not a reason to refresh');
    assert.equal(pool.status().credentials[0].lastErrorCode, 429);
  });
});

test('a 429 without a reset benches the only credential: the SDK retries send nothing more', async () => {
  await withScene({}, async (scene, pool) => {
    api.rateLimitAll = {};
    await assert.rejects(ask(recipeClient(pool, { maxRetries: 2 })), (err) => {
      // The SDK reports a rejected fetch as a connection error; hap's error is its cause.
      assert.ok(err instanceof Anthropic.APIConnectionError, String(err));
      assert.ok(err.cause instanceof hap.NoCredentialError, String(err.cause));
      assert.equal(typeof err.cause.retryAtMs, 'number');
      return true;
    });
    assert.equal(api.requests.length, 1);
    assert.equal(pool.status().credentials[0].lastStatus, 'exhausted');
  });
});

test('a 429 with a second credential in the pool: one retry with the other credential', async () => {
  await withScene({ credentials: false }, async (scene, pool) => {
    pool.close();
    const A = 'sk-ant-oat01-fake-a1';
    const B = 'sk-ant-oat01-fake-b2';
    const row = (id, priority, accessToken) => ({
      id,
      label: id,
      auth_type: 'oauth',
      priority,
      source: 'manual',
      access_token: accessToken,
      refresh_token: `sk-ant-ort01-fake-${id}`,
      expires_at_ms: Date.now() + 3_600_000,
    });
    fs.mkdirSync(path.dirname(scene.poolPath), { recursive: true });
    fs.writeFileSync(scene.poolPath, JSON.stringify({ credential_pool: { anthropic: [row('aaaaaa', 0, A), row('bbbbbb', 1, B)] } }), {
      mode: 0o600,
    });
    const two = new hap.Pool({ ...scene.config, credentials_path: null });
    try {
      api.rateLimited.set(A, { 'retry-after': '600' });
      // maxRetries 0: the one retry is createFetch's own, not the SDK's.
      const msg = await ask(recipeClient(two, { maxRetries: 0 }));
      assert.equal(msg.content[0].text, 'ok');
      assert.deepEqual(api.bearers(), [A, B]);
      api.requests.forEach(assertAuthHeaders);
      const status = two.status().credentials;
      assert.equal(status.find((c) => c.credentialId === 'aaaaaa').lastStatus, 'exhausted');
      assert.equal(status.find((c) => c.credentialId === 'bbbbbb').lastStatus, null);
      assert.equal((await server.stats()).posts, 0);
    } finally {
      two.close();
    }
  });
});
