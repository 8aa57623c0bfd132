'use strict';
// Every hap_status maps to its own HapError subclass with status, code,
// retryAtMs, credentialId and path. Each one the library can be driven into is
// produced for real; INTERNAL (a caught panic) and unknown values go through
// the same mapping function directly.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const util = require('node:util');
const hap = require('..');
const { startFakeServer, makeScene, EXPIRED } = require('./helpers.js');

let server;
before(async () => {
  server = await startFakeServer();
});
after(async () => {
  await server.stop();
});

const TOKEN_PATTERN = /sk-ant-(oat|ort)01-/;

function expectHapError(err, Cls, status, code) {
  assert.ok(err instanceof Cls, `expected ${Cls.name}, got ${err && err.name}: ${err && err.message}`);
  assert.ok(err instanceof hap.HapError);
  assert.ok(err instanceof Error);
  assert.equal(err.name, Cls.name);
  assert.equal(err.status, status);
  assert.equal(err.code, code);
  assert.equal(typeof err.message, 'string');
  assert.ok(err.message.length > 0);
  for (const text of [err.message, err.stack, util.inspect(err), JSON.stringify(err)]) {
    assert.doesNotMatch(text, TOKEN_PATTERN, 'no token in an error');
  }
  return true;
}

test('INVALID_ARGUMENT: an unknown config key, named in the message', () => {
  assert.throws(
    () => new hap.Pool({ poolPath: '/tmp/x/auth.json', noSuchKey: 1 }),
    (err) => expectHapError(err, hap.InvalidArgumentError, 1, 'HAP_STATUS_INVALID_ARGUMENT') && /no_such_key/.test(err.message),
  );
  assert.throws(
    () => new hap.Pool({ poolPath: 'relative/auth.json' }),
    (err) => expectHapError(err, hap.InvalidArgumentError, 1, 'HAP_STATUS_INVALID_ARGUMENT'),
  );
  assert.throws(() => new hap.Pool('{not json'), hap.InvalidArgumentError);
});

test('INVALID_ARGUMENT: an ill-typed request key, sync and async', async () => {
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    assert.throws(
      () => pool.resolveTokenSync({ minValidityMs: 'soon' }),
      (err) => expectHapError(err, hap.InvalidArgumentError, 1, 'HAP_STATUS_INVALID_ARGUMENT'),
    );
    await assert.rejects(pool.resolveToken({ bogus: true }), hap.InvalidArgumentError);
    await assert.rejects(pool.reportFailure({ statusCode: 429 }), hap.InvalidArgumentError);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('NO_CREDENTIAL: an empty pool and no credentials file', async () => {
  const scene = makeScene(server, { credentials: false });
  const pool = new hap.Pool(scene.config);
  try {
    await assert.rejects(pool.resolveToken(), (err) =>
      expectHapError(err, hap.NoCredentialError, 2, 'HAP_STATUS_NO_CREDENTIAL'),
    );
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('REAUTH_REQUIRED: the server revoked the grant; the credentials file is untouched', async () => {
  await server.reset();
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const bytesBefore = fs.readFileSync(scene.credentialsPath);
  await server.revokeAll();
  const pool = new hap.Pool(scene.config);
  try {
    await assert.rejects(pool.resolveToken(), (err) =>
      expectHapError(err, hap.ReauthRequiredError, 3, 'HAP_STATUS_REAUTH_REQUIRED'),
    );
    assert.deepEqual(fs.readFileSync(scene.credentialsPath), bytesBefore);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('UNAVAILABLE: the token endpoint answers 503; retryAtMs says when to come back', async () => {
  await server.reset();
  await server.script({ status: 503, body: { error: 'overloaded' } });
  const scene = makeScene(server, { expiresAtMs: EXPIRED() });
  const pool = new hap.Pool(scene.config);
  try {
    await assert.rejects(pool.resolveToken(), (err) => {
      expectHapError(err, hap.UnavailableError, 4, 'HAP_STATUS_UNAVAILABLE');
      assert.equal(typeof err.retryAtMs, 'number');
      assert.ok(err.retryAtMs > Date.now() - 1000);
      return true;
    });
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test("LOCK_TIMEOUT: Claude Code's refresh lock is held by someone else", async () => {
  await server.reset();
  const scene = makeScene(server, { expiresAtMs: EXPIRED(), config: { lock_timeout_ms: 400 } });
  // proper-lockfile protocol: a directory with a fresh mtime is a live lock.
  fs.mkdirSync(path.join(path.dirname(scene.credentialsPath), '.oauth_refresh.lock'));
  const pool = new hap.Pool(scene.config);
  try {
    await assert.rejects(pool.resolveToken(), (err) =>
      expectHapError(err, hap.LockTimeoutError, 5, 'HAP_STATUS_LOCK_TIMEOUT'),
    );
    assert.equal((await server.stats()).posts, 0);
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('STORE_CORRUPT: an unparsable pool file is named in path and left byte-for-byte', () => {
  const scene = makeScene(server);
  fs.mkdirSync(path.dirname(scene.poolPath), { recursive: true });
  fs.writeFileSync(scene.poolPath, 'not json{');
  try {
    assert.throws(
      () => new hap.Pool(scene.config),
      (err) => {
        expectHapError(err, hap.StoreCorruptError, 6, 'HAP_STATUS_STORE_CORRUPT');
        assert.equal(err.path, scene.poolPath);
        return true;
      },
    );
    assert.equal(fs.readFileSync(scene.poolPath, 'utf8'), 'not json{');
  } finally {
    scene.cleanup();
  }
});

test('IO: the pool path is a directory; path names it', async () => {
  const scene = makeScene(server);
  fs.mkdirSync(scene.poolPath, { recursive: true });
  try {
    let err;
    try {
      const pool = new hap.Pool(scene.config);
      try {
        await pool.resolveToken();
      } finally {
        pool.close();
      }
    } catch (e) {
      err = e;
    }
    expectHapError(err, hap.StoreIoError, 7, 'HAP_STATUS_IO');
    assert.equal(err.path, scene.poolPath);
  } finally {
    scene.cleanup();
  }
});

test('UNKNOWN_CREDENTIAL: reportFailure names an id the pool does not have', async () => {
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  try {
    await pool.resolveToken();
    await assert.rejects(pool.reportFailure({ credentialId: 'ffffff', statusCode: 429 }), (err) => {
      expectHapError(err, hap.UnknownCredentialError, 8, 'HAP_STATUS_UNKNOWN_CREDENTIAL');
      assert.equal(err.credentialId, 'ffffff');
      return true;
    });
  } finally {
    pool.close();
    scene.cleanup();
  }
});

test('every status value has its class; INTERNAL and unknown values map too', () => {
  const expected = [
    [1, hap.InvalidArgumentError],
    [2, hap.NoCredentialError],
    [3, hap.ReauthRequiredError],
    [4, hap.UnavailableError],
    [5, hap.LockTimeoutError],
    [6, hap.StoreCorruptError],
    [7, hap.IoError],
    [8, hap.UnknownCredentialError],
    [100, hap.InternalError],
  ];
  for (const [status, Cls] of expected) {
    const name = hap.statusName(status);
    assert.notEqual(name, 'HAP_STATUS_UNKNOWN', `libhap names status ${status}`);
    const key = name.replace(/^HAP_STATUS_/, '');
    assert.equal(hap.Status[key], status, `Status.${key}`);
    const err = hap._errorFromStatus(
      status,
      JSON.stringify({ status, name, message: 'm', retry_at_ms: 5, credential_id: 'abc123', path: '/p' }),
    );
    expectHapError(err, Cls, status, name);
    assert.equal(err.retryAtMs, 5);
    assert.equal(err.credentialId, 'abc123');
    assert.equal(err.path, '/p');
    // Without error JSON (a status-only caller) the name still comes through.
    const bare = hap._errorFromStatus(status, null);
    expectHapError(bare, Cls, status, name);
    assert.equal(bare.retryAtMs, null);
  }
  const unknown = hap._errorFromStatus(42, JSON.stringify({ status: 42, name: 'HAP_STATUS_NEW_THING', message: 'x' }));
  assert.equal(unknown.constructor, hap.HapError);
  assert.equal(unknown.code, 'HAP_STATUS_NEW_THING');
  assert.equal(hap._errorFromStatus(43, 'garbage').code, 'HAP_STATUS_UNKNOWN');
});

test('deprecated names are the very same classes as the aligned ones (docs/GLOSSARY.md)', () => {
  assert.equal(hap.StoreIoError, hap.IoError);
  assert.equal(hap.IoError.name, 'IoError');
  assert.equal(hap.TokenResult, hap.Token);
  assert.equal(hap.Token.name, 'Token');
  const err = hap._errorFromStatus(7, null);
  assert.ok(err instanceof hap.StoreIoError && err instanceof hap.IoError);
});
