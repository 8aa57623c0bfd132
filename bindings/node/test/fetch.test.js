'use strict';
// createFetch on its own (no SDK): headers, bodies that can and cannot be
// sent twice, Request inputs, rate-limit headers reaching the pool, and the
// errors. Real fake token server, real fake Messages API, real files.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { once } = require('node:events');
const http = require('node:http');
const hap = require('..');
const { startFakeServer, makeScene, FIXTURE_ACCESS } = require('./helpers.js');
const { FakeMessagesApi } = require('./fake_messages_api.js');

let server;
let api;
before(async () => {
  server = await startFakeServer();
  api = await FakeMessagesApi.start();
});
after(async () => {
  await api.stop();
  await server.stop();
});

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

const BODY = JSON.stringify({ model: 'claude-fake', max_tokens: 1, messages: [] });

test('createFetch needs a pool and a fetch function', () => {
  assert.throws(() => hap.createFetch(), TypeError);
  assert.throws(() => hap.createFetch({}), /opened once/);
  assert.throws(() => hap.createFetch({ pool: {}, fetch: 1 }), TypeError);
});

test('sets Bearer, merges anthropic-beta, drops x-api-key, whatever form the headers come in', async () => {
  await withScene({}, async (scene, pool) => {
    const hapFetch = hap.createFetch({ pool });
    const url = `${api.base}/v1/messages`;
    const forms = [
      { 'x-api-key': 'sk-ant-api03-fake-k', Authorization: 'Bearer stale', 'anthropic-beta': 'a-1, b-2' },
      [
        ['X-Api-Key', 'sk-ant-api03-fake-k'],
        ['anthropic-beta', 'a-1,b-2'],
      ],
      new Headers({ 'anthropic-beta': `a-1,${hap.OAUTH_BETA},b-2`, 'x-api-key': 'sk-ant-api03-fake-k' }),
    ];
    for (const headers of forms) {
      const res = await hapFetch(url, { method: 'POST', headers, body: BODY });
      assert.equal(res.status, 200, await res.text());
    }
    assert.equal(api.requests.length, 3);
    for (const req of api.requests) {
      assert.equal(req.bearer, FIXTURE_ACCESS);
      assert.equal(req.xApiKey, false);
      // The caller's betas kept, hap's added once.
      assert.deepEqual([...req.betas].sort(), ['a-1', 'b-2', hap.OAUTH_BETA].sort());
    }
  });
});

test('a Request with a body is sent again, body and all, after a 401', async () => {
  await withScene({}, async (scene, pool) => {
    api.rejected.add(FIXTURE_ACCESS);
    const hapFetch = hap.createFetch({ pool });
    const request = new Request(`${api.base}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: BODY,
    });
    const res = await hapFetch(request);
    assert.equal(res.status, 200);
    assert.equal(api.requests.length, 2);
    assert.equal(api.requests[1].body, BODY);
    assert.notEqual(api.requests[1].bearer, FIXTURE_ACCESS);
    assert.equal((await server.stats()).posts, 1);
  });
});

test('a stream body is reported on 401 but not sent twice, with a warning saying why', async () => {
  await withScene({}, async (scene, pool) => {
    api.rejected.add(FIXTURE_ACCESS);
    const hapFetch = hap.createFetch({ pool });
    const warned = once(process, 'warning');
    const stream = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode(BODY));
        controller.close();
      },
    });
    const res = await hapFetch(`${api.base}/v1/messages`, { method: 'POST', body: stream, duplex: 'half' });
    assert.equal(res.status, 401);
    assert.equal(api.requests.length, 1);
    const [warning] = await warned;
    assert.equal(warning.code, 'HAP_FETCH_STREAM_BODY');
    assert.doesNotMatch(warning.message, /sk-ant-/);
    // Reported: the next resolve refreshes (one POST) instead of serving the refused token.
    assert.equal(pool.status().credentials[0].lastStatus, 'refresh_pending');
    assert.equal((await server.stats()).posts, 0);
    const again = await hapFetch(`${api.base}/v1/messages`, { method: 'POST', body: BODY });
    assert.equal(again.status, 200);
    assert.equal((await server.stats()).posts, 1);
  });
});

test("a 429's anthropic-ratelimit-unified-reset reaches the pool as the credential's reset", async () => {
  await withScene({ credentials: false }, async (scene, pool) => {
    pool.close();
    const row = (id, priority) => ({
      id,
      label: id,
      auth_type: 'oauth',
      priority,
      source: 'manual',
      access_token: `sk-ant-oat01-fake-${id}`,
      refresh_token: `sk-ant-ort01-fake-${id}`,
      expires_at_ms: Date.now() + 3_600_000,
    });
    fs.mkdirSync(path.dirname(scene.poolPath), { recursive: true });
    fs.writeFileSync(scene.poolPath, JSON.stringify({ credential_pool: { anthropic: [row('aaaaaa', 0), row('bbbbbb', 1)] } }));
    const two = new hap.Pool({ ...scene.config, credentials_path: null });
    try {
      const resetS = Math.floor(Date.now() / 1000) + 900;
      api.rateLimited.set('sk-ant-oat01-fake-aaaaaa', { 'anthropic-ratelimit-unified-reset': String(resetS) });
      const res = await hap.createFetch({ pool: two })(`${api.base}/v1/messages`, { method: 'POST', body: BODY });
      assert.equal(res.status, 200);
      assert.deepEqual(api.bearers(), ['sk-ant-oat01-fake-aaaaaa', 'sk-ant-oat01-fake-bbbbbb']);
      const a = two.status().credentials.find((c) => c.credentialId === 'aaaaaa');
      assert.equal(a.lastStatus, 'exhausted');
      assert.equal(a.availableAtMs, resetS * 1000);
    } finally {
      two.close();
    }
  });
});

test('a Retry-After beyond what libhap takes (a year) is clamped, not a failed report', async () => {
  await withScene({ credentials: false }, async (scene, pool) => {
    pool.close();
    const row = (id, priority) => ({
      id,
      label: id,
      auth_type: 'oauth',
      priority,
      source: 'manual',
      access_token: `sk-ant-oat01-fake-${id}`,
      refresh_token: `sk-ant-ort01-fake-${id}`,
      expires_at_ms: Date.now() + 3_600_000,
    });
    fs.mkdirSync(path.dirname(scene.poolPath), { recursive: true });
    fs.writeFileSync(scene.poolPath, JSON.stringify({ credential_pool: { anthropic: [row('aaaaaa', 0), row('bbbbbb', 1)] } }));
    const two = new hap.Pool({ ...scene.config, credentials_path: null });
    const warnings = [];
    const onWarning = (w) => warnings.push(w.code);
    process.on('warning', onWarning);
    try {
      api.rateLimited.set('sk-ant-oat01-fake-aaaaaa', { 'retry-after': '99999999999' });
      const res = await hap.createFetch({ pool: two })(`${api.base}/v1/messages`, { method: 'POST', body: BODY });
      assert.equal(res.status, 200);
      assert.deepEqual(api.bearers(), ['sk-ant-oat01-fake-aaaaaa', 'sk-ant-oat01-fake-bbbbbb']);
      assert.equal(two.status().credentials.find((c) => c.credentialId === 'aaaaaa').lastStatus, 'exhausted');
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings, []);
    } finally {
      process.off('warning', onWarning);
      two.close();
    }
  });
});

test('no credential: the fetch rejects with the pool error and sends nothing', async () => {
  await withScene({ credentials: false }, async (scene, pool) => {
    const hapFetch = hap.createFetch({ pool });
    await assert.rejects(hapFetch(`${api.base}/v1/messages`, { method: 'POST', body: BODY }), hap.NoCredentialError);
    assert.equal(api.requests.length, 0);
  });
});

test('a redirect to another origin does not carry the token', async () => {
  await withScene({}, async (scene, pool) => {
    const seen = [];
    const other = http.createServer((req, res) => {
      seen.push(req.headers.authorization ?? null);
      res.end('{}');
    });
    await new Promise((resolve) => other.listen(0, '127.0.0.1', resolve));
    const redirector = http.createServer((req, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${other.address().port}/elsewhere` });
      res.end();
    });
    await new Promise((resolve) => redirector.listen(0, '127.0.0.1', resolve));
    try {
      const res = await hap.createFetch({ pool })(`http://127.0.0.1:${redirector.address().port}/v1/messages`, {
        method: 'POST',
        body: BODY,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(seen, [null]);
    } finally {
      redirector.closeAllConnections();
      other.closeAllConnections();
      await new Promise((resolve) => redirector.close(resolve));
      await new Promise((resolve) => other.close(resolve));
    }
  });
});
