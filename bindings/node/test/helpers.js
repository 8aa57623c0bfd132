'use strict';
// Shared scaffolding for the scenarios: the real fake token server as a child
// process, temp dirs with real store files, and the server's admin endpoints.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
const FAKE_SERVER = process.env.HAP_FAKE_SERVER || path.join(REPO_ROOT, 'testing', 'fake_token_server.py');

// Short fake tokens only (a commit hook flags long sk-ant-* strings).
const FIXTURE_ACCESS = 'sk-ant-oat01-fake-a1';
const FIXTURE_REFRESH = 'sk-ant-ort01-fake-r1';

async function startFakeServer(args = []) {
  const child = spawn('python3', [FAKE_SERVER, '--port', '0', '--exit-on-stdin-eof', ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = readline.createInterface({ input: child.stdout });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('fake token server did not start within 10 s')), 10_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`fake token server exited early (${code})`)));
    lines.once('line', (line) => {
      clearTimeout(timer);
      resolve(line.trim());
    });
  });
  child.removeAllListeners('exit');
  const admin = async (method, route, body) => {
    const res = await fetch(base + route, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  return {
    base,
    tokenUrl: `${base}/v1/oauth/token`,
    stats: () => admin('GET', '/_admin/stats'),
    script: (...faults) => admin('POST', '/_admin/script', { faults }),
    revokeAll: () => admin('POST', '/_admin/revoke', { all: true }),
    reset: () => admin('POST', '/_admin/reset', {}),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      const kill = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(kill);
    },
  };
}

// A scenario's directory: <tmp>/hermes/auth.json (pool) and
// <tmp>/claude/.credentials.json (Claude Code), plus a config for them.
function makeScene(server, { expiresAtMs = Date.now() + 3_600_000, credentials = true, config = {} } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hap-node-'));
  const poolPath = path.join(dir, 'hermes', 'auth.json');
  const credentialsPath = path.join(dir, 'claude', '.credentials.json');
  fs.mkdirSync(path.dirname(credentialsPath), { recursive: true, mode: 0o700 });
  if (credentials) writeCredentials(credentialsPath, { expiresAtMs });
  return {
    dir,
    poolPath,
    credentialsPath,
    config: {
      pool_path: poolPath,
      credentials_path: credentialsPath,
      token_urls: [server.tokenUrl],
      lock_timeout_ms: 10_000,
      http_timeout_ms: 5_000,
      ...config,
    },
    readCredentials: () => JSON.parse(fs.readFileSync(credentialsPath, 'utf8')),
    readPool: () => JSON.parse(fs.readFileSync(poolPath, 'utf8')),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

function writeCredentials(file, { expiresAtMs, accessToken = FIXTURE_ACCESS, refreshToken = FIXTURE_REFRESH } = {}) {
  const body = {
    claudeAiOauth: {
      accessToken,
      refreshToken,
      expiresAt: expiresAtMs,
      scopes: ['user:inference'],
      subscriptionType: 'max',
      rateLimitTier: 'default_claude_max_20x',
    },
    otherTool: { keep: true },
  };
  fs.writeFileSync(file, JSON.stringify(body, null, 2), { mode: 0o600 });
}

const EXPIRED = () => Date.now() - 60_000;

module.exports = {
  REPO_ROOT,
  FIXTURE_ACCESS,
  FIXTURE_REFRESH,
  EXPIRED,
  startFakeServer,
  makeScene,
  writeCredentials,
};
