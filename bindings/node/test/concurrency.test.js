'use strict';
// Threads: resolveToken runs libhap on a libuv worker, so the event loop keeps
// turning during a slow refresh; and many concurrent callers share one POST.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const hap = require('..');
const { startFakeServer, makeScene, EXPIRED } = require('./helpers.js');

let server;
before(async () => {
  server = await startFakeServer();
});
after(async () => {
  await server.stop();
});

test('a timer keeps ticking while a refresh waits 1 s on the token server', async () => {
  await server.reset();
  await server.script({ delay_ms: 1000 });
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const pool = new hap.Pool(scene.config);
  try {
    const ticks = [];
    const timer = setInterval(() => ticks.push(Date.now()), 50);
    const started = Date.now();
    let token;
    try {
      token = await pool.resolveToken();
    } finally {
      clearInterval(timer);
    }
    const elapsed = Date.now() - started;
    assert.equal(token.refreshed, true);
    assert.ok(elapsed >= 950, `the refresh really waited on the server (${elapsed} ms)`);
    // 1 s at 50 ms is ~20 ticks; a blocked loop would give 0 or 1.
    assert.ok(ticks.length >= 10, `timer ticked ${ticks.length} times during ${elapsed} ms`);
    const gaps = ticks.slice(1).map((t, i) => t - ticks[i]);
    assert.ok(Math.max(...gaps) < 500, `no long stall between ticks (max gap ${Math.max(...gaps)} ms)`);
    assert.equal((await server.stats()).posts, 1);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

for (const maxConcurrentCalls of [2, 8]) {
  test(`40 concurrent resolveToken calls on an expired token make exactly one POST (maxConcurrentCalls ${maxConcurrentCalls})`, async () => {
    await server.reset();
    // Slow enough that every caller is waiting while the refresh is in flight.
    await server.script({ delay_ms: 300 });
    const scene = makeScene(server, { expiresAtMs: EXPIRED() });
    const pool = new hap.Pool(scene.config, { maxConcurrentCalls });
    try {
      const tokens = await Promise.all(Array.from({ length: 40 }, () => pool.resolveToken()));
      const distinct = new Set(tokens.map((t) => t.accessToken));
      assert.equal(distinct.size, 1, 'everyone got the same fresh token');
      assert.equal(tokens.filter((t) => t.refreshed).length, 1, 'exactly one caller did the refresh');
      const stats = await server.stats();
      assert.equal(stats.posts, 1);
      assert.equal(stats.issued, 1);
      assert.equal(scene.readCredentials().claudeAiOauth.accessToken, tokens[0].accessToken);
    } finally {
      pool.close();
      scene.cleanup();
    }
  });
}

test('two pools in one process on the same files still make one POST', async () => {
  await server.reset();
  await server.script({ delay_ms: 300 });
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const a = new hap.Pool(scene.config);
  const b = new hap.Pool(scene.config);
  try {
    const tokens = await Promise.all([a.resolveToken(), b.resolveToken(), a.resolveToken(), b.resolveToken()]);
    assert.equal(new Set(tokens.map((t) => t.accessToken)).size, 1);
    assert.equal((await server.stats()).posts, 1);
  } finally {
    a.close();
    b.close();
    scene.cleanup();
  }
});
