'use strict';
// Loading: HAP_LIBRARY_PATH overrides, failures name every path tried, the ABI
// version is checked, and the package works from both require and import.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startFakeServer, makeScene } = require('./helpers.js');

const PKG = path.resolve(__dirname, '..');

function runNode(args, env) {
  return spawnSync(process.execPath, args, { cwd: PKG, env: { ...process.env, ...env }, encoding: 'utf8' });
}

function hasCompiler() {
  try {
    execFileSync('cc', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// A shared library that exports hap_abi_version() returning `abi`, and nothing else.
function buildFakeLibrary(dir, abi) {
  const src = path.join(dir, 'fake.c');
  const lib = path.join(dir, 'libfakehap.so');
  fs.writeFileSync(src, `#include <stdint.h>\nuint32_t hap_abi_version(void) { return ${abi}u; }\n`);
  execFileSync('cc', ['-shared', '-fPIC', '-o', lib, src]);
  return lib;
}

test('require() succeeds without a library; the first use fails naming every path tried', () => {
  const missing = path.join(os.tmpdir(), 'no-such-dir', 'libhap.so');
  const run = runNode(
    ['-e', "const hap = require('.'); try { hap.version() } catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, tried: e.tried })) }"],
    { HAP_LIBRARY_PATH: missing },
  );
  assert.equal(run.status, 0, run.stderr);
  const err = JSON.parse(run.stdout);
  assert.equal(err.name, 'HapLoadError');
  assert.equal(err.code, 'ERR_HAP_LOAD');
  assert.ok(err.message.includes(missing), err.message);
  assert.ok(err.message.includes('HAP_LIBRARY_PATH'), err.message);
  assert.deepEqual(err.tried, [missing], 'an override is not a first guess: nothing else is tried');
});

test('new Pool() without a library throws the same HapLoadError', () => {
  const run = runNode(['-e', "const hap = require('.'); try { new hap.Pool() } catch (e) { console.log(e.name) }"], {
    HAP_LIBRARY_PATH: '/nonexistent/libhap.so',
  });
  assert.equal(run.stdout.trim(), 'HapLoadError');
});

test('a library speaking another ABI major is refused with both versions in the message', { skip: !hasCompiler() && 'no C compiler' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hap-abi-'));
  try {
    const lib = buildFakeLibrary(dir, 0x00010000);
    const run = runNode(['-e', "try { require('.').version() } catch (e) { console.log(e.name + ': ' + e.message) }"], {
      HAP_LIBRARY_PATH: lib,
    });
    assert.match(run.stdout, /^HapLoadError: /);
    assert.match(run.stdout, /ABI 1\.0/);
    assert.match(run.stdout, /needs ABI 0\.x/);
    assert.ok(run.stdout.includes(lib));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a library with the right ABI number but missing functions is refused', { skip: !hasCompiler() && 'no C compiler' }, () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hap-abi-'));
  try {
    const lib = buildFakeLibrary(dir, 0x00000001);
    const run = runNode(['-e', "try { require('.').version() } catch (e) { console.log(e.name + ': ' + e.message) }"], {
      HAP_LIBRARY_PATH: lib,
    });
    assert.match(run.stdout, /^HapLoadError: .* lacks a hap ABI 0\.1 symbol/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('in the checkout, without HAP_LIBRARY_PATH, only the repository build is tried', () => {
  const run = runNode(
    ['-e', "const hap = require('.'); try { console.log(JSON.stringify({ path: hap.libraryPath() })) } catch (e) { console.log(JSON.stringify({ tried: e.tried, message: e.message })) }"],
    { HAP_LIBRARY_PATH: '' },
  );
  assert.equal(run.status, 0, run.stderr);
  const out = JSON.parse(run.stdout);
  const built = path.resolve(PKG, '..', '..', 'target', 'release', 'libhap.so');
  if (out.path) assert.equal(out.path, built);
  else {
    assert.deepEqual(out.tried, [built]);
    assert.match(out.message, /cargo build --release/);
  }
});

test('ESM import (named and default) and CJS require of the package name both work', async () => {
  const server = await startFakeServer();
  const scene = makeScene(server);
  try {
    const esm = runNode([path.join(__dirname, 'fixtures', 'esm_usage.mjs')], {
      HAP_TEST_CONFIG: JSON.stringify(scene.config),
    });
    assert.equal(esm.status, 0, esm.stderr);
    const out = JSON.parse(esm.stdout);
    assert.match(out.version, /^hap /);
    assert.equal(out.sameAsDefault, true);
    assert.deepEqual(out.missingNamedExports, [], 'index.mjs re-exports everything index.js does');
    assert.equal(out.isToken, true);
    assert.equal(out.isTokenResult, true);
    assert.equal(out.refreshed, false);
    assert.equal(out.unknownCredential, 'HAP_STATUS_UNKNOWN_CREDENTIAL');

    const cjs = runNode(['-e', "const { Pool } = require('hap-oauth'); console.log(typeof Pool)"]);
    assert.equal(cjs.stdout.trim(), 'function', cjs.stderr);
  } finally {
    scene.cleanup();
    await server.stop();
  }
});
