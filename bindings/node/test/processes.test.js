'use strict';
// Several Node processes (Hermes-style profiles: separate pool files, one
// shared Claude Code credentials file) resolve an expired token at the same
// instant: exactly one refresh POST machine-wide. The processes are the README
// demo worker, so this also checks its output contract.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const { startFakeServer, makeScene, EXPIRED } = require('./helpers.js');

const WORKER = path.join(__dirname, '..', 'demo_worker.js');

let server;
before(async () => {
  server = await startFakeServer();
});
after(async () => {
  await server.stop();
});

function runWorker(config, startAtMs) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WORKER], {
      env: { ...process.env, HAP_DEMO_CONFIG: JSON.stringify(config), HAP_DEMO_START_AT_MS: String(startAtMs) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stdout, stderr, pid: child.pid }));
  });
}

test('6 processes with separate pool files sharing one credentials file make exactly one POST', async () => {
  await server.reset();
  // The first POST is slow, so every process is inside its resolve meanwhile.
  await server.script({ delay_ms: 500 });
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  try {
    const startAt = Date.now() + 1500; // time for every process to boot and load libhap
    const runs = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        runWorker({ ...scene.config, pool_path: path.join(scene.dir, `profile-${i}`, 'auth.json') }, startAt),
      ),
    );
    const lines = runs.map((run) => {
      assert.equal(run.code, 0, `worker failed: ${run.stdout} ${run.stderr}`);
      const out = run.stdout.trim().split('\n');
      assert.equal(out.length, 1, 'one JSON line');
      return JSON.parse(out[0]);
    });
    for (const [i, line] of lines.entries()) {
      assert.deepEqual(Object.keys(line).sort(), ['credential_id', 'lang', 'pid', 'refreshed', 'token_sha256']);
      assert.equal(line.lang, 'node');
      assert.equal(line.pid, runs[i].pid);
      assert.match(line.token_sha256, /^[0-9a-f]{12}$/);
    }
    assert.equal(new Set(lines.map((l) => l.token_sha256)).size, 1, 'one token for all');
    assert.equal(lines.filter((l) => l.refreshed).length, 1, 'one process refreshed');
    const stats = await server.stats();
    assert.equal(stats.posts, 1);
    assert.equal(stats.invalid_grant, 0);
  } finally {
    scene.cleanup();
  }
});

test('the demo worker reports a failure as one JSON line and exit code 1', async () => {
  const scene = makeScene(server, { credentials: false });
  try {
    const run = await runWorker(scene.config, 0);
    assert.equal(run.code, 1);
    const line = JSON.parse(run.stdout.trim());
    assert.equal(line.lang, 'node');
    assert.equal(line.pid, run.pid);
    assert.equal(line.error, 'HAP_STATUS_NO_CREDENTIAL');
    assert.equal(typeof line.message, 'string');
  } finally {
    scene.cleanup();
  }
});
