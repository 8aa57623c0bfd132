'use strict';
// Packaging: the per-platform package refuses to pack without a library for its cpu, the
// JavaScript package refuses to pack without platform packages to depend on, and an installed
// hap-oauth finds libhap in @hap-oauth/<platform>, or says exactly what to install.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startFakeServer, makeScene } = require('./helpers.js');

const PKG = path.resolve(__dirname, '..');
const PLATFORM_PKG = path.join(PKG, 'npm', 'linux-x64-gnu');
const VERSION = require('../package.json').version;
const LIB = process.env.HAP_LIBRARY_PATH || path.resolve(PKG, '..', '..', 'target', 'release', 'libhap.so');
const onLinuxX64 = process.platform === 'linux' && process.arch === 'x64';

function npmPack(cwd, env, dest) {
  return spawnSync('npm', ['pack', '--pack-destination', dest], {
    cwd,
    env: { ...process.env, npm_config_update_notifier: 'false', ...env },
    encoding: 'utf8',
  });
}

function tmpdir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'hap-pack-'));
}

test('the platform package refuses to pack with no library, naming what to do', () => {
  const dest = tmpdir();
  try {
    const run = npmPack(PLATFORM_PKG, { HAP_LIBRARY_PATH: path.join(dest, 'missing', 'libhap.so') }, dest);
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /@hap-oauth\/linux-x64-gnu prepack: no library to pack: .*missing\/libhap\.so does not exist/);
    assert.match(run.stderr, /scripts\/dist/);
    assert.deepEqual(fs.readdirSync(dest), [], 'no tarball');
    assert.ok(!fs.existsSync(path.join(PLATFORM_PKG, 'libhap.so')));
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});

test('the platform package refuses a library built for another cpu', { skip: !fs.existsSync(LIB) && 'no libhap built' }, () => {
  const dest = tmpdir();
  try {
    const run = npmPack(path.join(PKG, 'npm', 'linux-arm64-gnu'), { HAP_LIBRARY_PATH: LIB }, dest);
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /is built for ELF machine 62, not arm64 \(183\)/);
    assert.deepEqual(fs.readdirSync(dest), []);
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});

test('the platform package packs the library, and leaves no copy behind', { skip: !fs.existsSync(LIB) && 'no libhap built' }, () => {
  const dest = tmpdir();
  try {
    const run = npmPack(PLATFORM_PKG, { HAP_LIBRARY_PATH: LIB }, dest);
    assert.equal(run.status, 0, run.stderr);
    const tgz = path.join(dest, `hap-oauth-linux-x64-gnu-${VERSION}.tgz`);
    const list = spawnSync('tar', ['-tzf', tgz], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).sort();
    assert.deepEqual(list, ['package/README.md', 'package/libhap.so', 'package/package.json']);
    assert.ok(!fs.existsSync(path.join(PLATFORM_PKG, 'libhap.so')), 'postpack removed the copy');
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});

test('hap-oauth itself refuses to pack from the checkout (it would name no library package)', () => {
  const dest = tmpdir();
  try {
    const run = npmPack(PKG, {}, dest);
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /hap-oauth prepack: this package\.json names no @hap-oauth\/<platform> package/);
    assert.deepEqual(fs.readdirSync(dest), []);
  } finally {
    fs.rmSync(dest, { recursive: true, force: true });
  }
});

// node_modules/hap-oauth as npm installs the released package (optionalDependencies naming the
// platform packages), koffi beside it, and optionally @hap-oauth/linux-x64-gnu.
function installedLayout(withPlatformPackage) {
  const dir = tmpdir();
  const modules = path.join(dir, 'node_modules');
  const pkgDir = path.join(modules, 'hap-oauth');
  fs.mkdirSync(pkgDir, { recursive: true });
  for (const f of ['index.js', 'index.mjs', 'lib']) fs.cpSync(path.join(PKG, f), path.join(pkgDir, f), { recursive: true });
  const manifest = { ...require('../package.json'), optionalDependencies: { '@hap-oauth/linux-x64-gnu': VERSION } };
  fs.writeFileSync(path.join(pkgDir, 'package.json'), JSON.stringify(manifest));
  fs.symlinkSync(path.join(PKG, 'node_modules', 'koffi'), path.join(modules, 'koffi'));
  if (withPlatformPackage) {
    const plat = path.join(modules, '@hap-oauth', 'linux-x64-gnu');
    fs.mkdirSync(plat, { recursive: true });
    fs.copyFileSync(path.join(PLATFORM_PKG, 'package.json'), path.join(plat, 'package.json'));
    fs.copyFileSync(LIB, path.join(plat, 'libhap.so'));
  }
  return dir;
}

function runIn(dir, code, env) {
  const clean = { ...process.env, ...env };
  delete clean.HAP_LIBRARY_PATH;
  return spawnSync(process.execPath, ['-e', code], { cwd: dir, env: clean, encoding: 'utf8' });
}

test('installed without its platform package, the loader says what to install', { skip: !onLinuxX64 && 'linux-x64 only' }, () => {
  const dir = installedLayout(false);
  try {
    const run = runIn(dir, "try { require('hap-oauth').version() } catch (e) { console.log(JSON.stringify({ message: e.message, tried: e.tried })) }");
    assert.equal(run.status, 0, run.stderr);
    const { message, tried } = JSON.parse(run.stdout);
    assert.ok(message.includes(`npm install @hap-oauth/linux-x64-gnu@${VERSION}`), message);
    assert.ok(message.includes(`npm install ./hap-oauth-linux-x64-gnu-${VERSION}.tgz ./hap-oauth-${VERSION}.tgz`), message);
    assert.deepEqual(tried, [], 'an installed copy never looks into a checkout');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('installed with its platform package, libhap is loaded from it and resolves', { skip: (!onLinuxX64 || !fs.existsSync(LIB)) && 'needs linux-x64 and a built libhap' }, async () => {
  const dir = installedLayout(true);
  const server = await startFakeServer();
  const scene = makeScene(server);
  try {
    const run = runIn(
      dir,
      "const hap = require('hap-oauth'); const p = new hap.Pool(JSON.parse(process.env.CFG)); " +
        'p.resolveToken().then((t) => { console.log(JSON.stringify({ lib: hap.libraryPath(), id: t.credentialId })); p.close(); });',
      { CFG: JSON.stringify(scene.config) },
    );
    assert.equal(run.status, 0, run.stderr);
    const out = JSON.parse(run.stdout);
    assert.equal(out.lib, path.join(dir, 'node_modules', '@hap-oauth', 'linux-x64-gnu', 'libhap.so'));
    assert.ok(out.id);
  } finally {
    scene.cleanup();
    await server.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
