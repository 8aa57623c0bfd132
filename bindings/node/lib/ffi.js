'use strict';
// The raw boundary: where libhap is found, how each C function is declared for
// koffi, and the one helper that turns an owned `char *` into a JS string and
// gives the memory back with hap_free. Nothing outside this file touches a
// pointer.

const fs = require('node:fs');
const path = require('node:path');

// Required on first use, so `require('hap-oauth')` works (types, error
// classes) even where koffi is missing, and the failure can say what to do.
let koffiModule = null;
function requireKoffi() {
  if (koffiModule) return koffiModule;
  try {
    koffiModule = require('koffi');
  } catch (err) {
    // Installed from a registry or a tarball, koffi sits beside hap-oauth. It is missing when
    // the checkout's folder was linked (`npm install ./bindings/node`): npm links a folder and
    // installs none of its dependencies.
    throw new HapLoadError(
      `hap-oauth cannot load koffi (${err.message.split('\n')[0]}). If hap-oauth is a link ` +
        'to a checkout (npm install ./bindings/node), run `npm ci` in that bindings/node ' +
        'folder; otherwise install the released packages: `npm install hap-oauth`.',
      [],
    );
  }
  return koffiModule;
}

// The ABI this package was written against (docs/ABI.md). Same major, minor at least this.
const ABI_MAJOR = 0;
const ABI_MINOR = 1;

// Koffi runs the C function on a stack of its own, and for `.async` calls that
// stack is 128 KiB by default. libhap does TLS and JSON on it, and Rust code is
// written for a 2 MiB thread stack; an overflow there is a segfault, not an
// exception. So ask for what a Rust thread would get, with headroom.
const NEEDED_STACK = 4 * 1024 * 1024;

class HapLoadError extends Error {
  constructor(message, tried) {
    super(message);
    this.name = 'HapLoadError';
    this.code = 'ERR_HAP_LOAD';
    this.tried = tried;
  }
}

function libraryFileName() {
  if (process.platform === 'darwin') return 'libhap.dylib';
  if (process.platform === 'win32') return 'hap.dll';
  return 'libhap.so';
}

const PACKAGE_DIR = path.resolve(__dirname, '..');
const PACKAGE = JSON.parse(fs.readFileSync(path.join(PACKAGE_DIR, 'package.json'), 'utf8'));
// The checkout (bindings/node beside the crate) may load the repository build; an installed
// copy never looks outside its own node_modules.
const CHECKOUT_ROOT = path.resolve(PACKAGE_DIR, '..', '..');
const IN_CHECKOUT = fs.existsSync(path.join(CHECKOUT_ROOT, 'Cargo.toml')) && fs.existsSync(path.join(CHECKOUT_ROOT, 'include', 'hap.h'));

// The prebuilt library for this machine comes in the package @hap-oauth/<key>, named the way
// esbuild and napi-rs name theirs (linux-x64-gnu, linux-arm64-gnu, ...). npm installs only the
// one whose os/cpu/libc match, out of the optionalDependencies of the published package.json.
function platformKey() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  // Node reports glibcVersionRuntime only when it runs on glibc.
  const report = process.report;
  const excludeNetwork = report.excludeNetwork;
  report.excludeNetwork = true; // no DNS lookups just to read the header
  try {
    return `linux-${process.arch}-${report.getReport().header.glibcVersionRuntime ? 'gnu' : 'musl'}`;
  } finally {
    report.excludeNetwork = excludeNetwork;
  }
}

function platformPackage() {
  return `@hap-oauth/${platformKey()}`;
}

// HAP_LIBRARY_PATH is an override, not a first guess: when it is set and wrong,
// loading fails rather than silently testing some other copy of the library.
function candidates() {
  const fromEnv = process.env.HAP_LIBRARY_PATH;
  if (fromEnv) return [{ path: path.resolve(fromEnv), origin: 'HAP_LIBRARY_PATH' }];
  const name = libraryFileName();
  const list = [];
  const pkg = platformPackage();
  let dir = null;
  try {
    dir = path.dirname(require.resolve(`${pkg}/package.json`, { paths: [PACKAGE_DIR] }));
  } catch {
    // not installed: load() explains how to get it
  }
  if (dir) list.push({ path: path.join(dir, name), origin: pkg });
  if (IN_CHECKOUT) list.push({ path: path.join(CHECKOUT_ROOT, 'target', 'release', name), origin: 'repository build' });
  return list;
}

// What to do when no candidate loaded: the advice depends on how hap-oauth got here.
function installAdvice() {
  const pkg = platformPackage();
  const version = (PACKAGE.optionalDependencies || {})[pkg];
  const prebuilt = Object.keys(PACKAGE.optionalDependencies || {}).filter((n) => n.startsWith('@hap-oauth/'));
  const build =
    'or build libhap yourself (`cargo build --release` in the hap repository) and set ' +
    'HAP_LIBRARY_PATH to the absolute path of target/release/libhap.so.';
  if (IN_CHECKOUT) {
    return 'This is a checkout: run `cargo build --release` at the repository root, or set HAP_LIBRARY_PATH to the absolute path of a libhap.so.';
  }
  if (version) {
    const tgz = `${pkg.slice(1).replace('/', '-')}-${version}.tgz`;
    return (
      `The prebuilt libhap for this machine comes in ${pkg}, an optional dependency of hap-oauth that is not installed ` +
      '(npm leaves optional dependencies out with --omit=optional, and cannot fetch them when hap-oauth came from a tarball ' +
      `and no registry has them). Install it beside hap-oauth: \`npm install ${pkg}@${version}\` ` +
      `(from tarballs: \`npm install ./${tgz} ./hap-oauth-${PACKAGE.version}.tgz\`), ${build}`
    );
  }
  return (
    `hap-oauth ${PACKAGE.version} has no prebuilt libhap for ${platformKey()}` +
    (prebuilt.length ? ` (prebuilt: ${prebuilt.map((n) => n.slice('@hap-oauth/'.length)).join(', ')})` : '') +
    `; ${build}`
  );
}

function raiseStackSizes(koffi) {
  const current = koffi.config();
  if (current.async_stack_size >= NEEDED_STACK && current.sync_stack_size >= NEEDED_STACK) return;
  try {
    koffi.config({
      sync_stack_size: Math.max(current.sync_stack_size, NEEDED_STACK),
      async_stack_size: Math.max(current.async_stack_size, NEEDED_STACK),
    });
  } catch (err) {
    // Another module loaded a library through this koffi first; the sizes are frozen.
    process.emitWarning(
      `koffi was already in use before hap-oauth loaded libhap (${err.message}); ` +
        `its call stacks are ${current.sync_stack_size} / ${current.async_stack_size} bytes, ` +
        `libhap wants ${NEEDED_STACK}. require('hap-oauth') before other koffi users, or call ` +
        `koffi.config({ sync_stack_size: ${NEEDED_STACK}, async_stack_size: ${NEEDED_STACK} }) first.`,
      { code: 'HAP_KOFFI_STACK' },
    );
  }
}

function declare(lib) {
  // Pointers are koffi 3 BigInts. Handles and owned strings are both `void *`
  // here: koffi does not check pointee types anyway, and anonymous types keep
  // this file free of koffi's global type-name registry (two copies of this
  // package in one process would otherwise collide).
  return {
    hap_abi_version: lib.func('uint32_t hap_abi_version(void)'),
    hap_version: lib.func('const char *hap_version(void)'),
    hap_status_name: lib.func('const char *hap_status_name(int32_t status)'),
    hap_pool_open: lib.func(
      'int32_t hap_pool_open(const char *config_json, _Out_ void **pool_out, _Out_ void **error_out)',
    ),
    hap_resolve_token: lib.func(
      'int32_t hap_resolve_token(void *pool, const char *request_json, _Out_ void **result_json_out, _Out_ void **error_out)',
    ),
    hap_report_failure: lib.func(
      'int32_t hap_report_failure(void *pool, const char *failure_json, _Out_ void **result_json_out, _Out_ void **error_out)',
    ),
    hap_pool_status: lib.func(
      'int32_t hap_pool_status(void *pool, _Out_ void **status_json_out, _Out_ void **error_out)',
    ),
    hap_pool_free: lib.func('void hap_pool_free(void *pool)'),
    hap_free: lib.func('void hap_free(void *s)'),
  };
}

let loaded = null;

function load() {
  if (loaded) return loaded;
  const koffi = requireKoffi();
  const tried = [];
  const triedPaths = [];
  for (const candidate of candidates()) {
    triedPaths.push(candidate.path);
    if (!fs.existsSync(candidate.path)) {
      tried.push(`${candidate.path} (${candidate.origin}): no such file`);
      continue;
    }
    raiseStackSizes(koffi);
    let lib;
    try {
      lib = koffi.load(candidate.path);
    } catch (err) {
      tried.push(`${candidate.path} (${candidate.origin}): ${err.message}`);
      continue;
    }
    let abi;
    try {
      abi = lib.func('uint32_t hap_abi_version(void)')();
    } catch (err) {
      throw new HapLoadError(`${candidate.path} is not libhap: ${err.message}`, [candidate.path]);
    }
    const major = abi >>> 16;
    const minor = abi & 0xffff;
    if (major !== ABI_MAJOR || minor < ABI_MINOR) {
      throw new HapLoadError(
        `${candidate.path} speaks hap ABI ${major}.${minor}; hap-oauth needs ABI ${ABI_MAJOR}.x with minor >= ${ABI_MINOR}. ` +
          `Rebuild libhap or install the matching hap-oauth.`,
        [candidate.path],
      );
    }
    let fns;
    try {
      fns = declare(lib);
    } catch (err) {
      throw new HapLoadError(`${candidate.path} lacks a hap ABI ${major}.${minor} symbol: ${err.message}`, [
        candidate.path,
      ]);
    }
    loaded = { path: candidate.path, abi: { major, minor }, fns };
    return loaded;
  }
  if (process.env.HAP_LIBRARY_PATH) {
    throw new HapLoadError(
      `cannot load libhap from HAP_LIBRARY_PATH: ${tried.join('; ')}. Point it at an existing libhap.so, or unset it to use the installed one.`,
      triedPaths,
    );
  }
  throw new HapLoadError(
    `cannot load libhap; ${tried.length ? `tried:\n  ${tried.join('\n  ')}\n` : ''}${installAdvice()}`,
    triedPaths,
  );
}

// THE place an owned string leaves libhap: copy it into JS, then hap_free it
// (which zeroes the bytes). Never libc free: the allocator is Rust's.
function takeOwnedString(fns, ptr) {
  if (ptr === null || ptr === undefined || ptr === 0n) return null;
  try {
    return requireKoffi().decode(ptr, 'char', -1);
  } finally {
    fns.hap_free(ptr);
  }
}

// hap_pool_open: the one out-param that is a handle, not a string.
function openPool(configJson) {
  const { fns } = load();
  const handle = [null];
  const err = [null];
  const status = fns.hap_pool_open(configJson, handle, err);
  const error = takeOwnedString(fns, err[0]);
  return { status, handle: status === 0 ? handle[0] : null, error };
}

function freePool(handle) {
  load().fns.hap_pool_free(handle);
}

// One C call of the (pool, input, char **out, char **error) shape, e.g.
// callSync('hap_resolve_token', [handle, requestJson]). Returns
// { status, out, error } with both owned strings decoded and already freed.
function callSync(name, args) {
  const { fns } = load();
  const out = [null];
  const err = [null];
  const status = fns[name](...args, out, err);
  return settle(fns, status, out[0], err[0]);
}

// The same on a libuv worker thread (koffi `.async`): the event loop keeps
// running while libhap waits on a lock or the token endpoint.
function callAsync(name, args) {
  const { fns } = load();
  const out = [null];
  const err = [null];
  return new Promise((resolve, reject) => {
    fns[name].async(...args, out, err, (callError, status) => {
      let settled;
      try {
        // Free whatever the call handed out, even when koffi itself reported an error.
        settled = settle(fns, status, out[0], err[0]);
      } catch (e) {
        reject(callError || e);
        return;
      }
      if (callError) reject(callError);
      else resolve(settled);
    });
  });
}

function settle(fns, status, outPtr, errPtr) {
  let out;
  let error;
  try {
    out = takeOwnedString(fns, outPtr);
  } finally {
    error = takeOwnedString(fns, errPtr);
  }
  return { status, out, error };
}

function versionString() {
  return load().fns.hap_version();
}

function statusName(status) {
  return load().fns.hap_status_name(status);
}

module.exports = {
  ABI_MAJOR,
  ABI_MINOR,
  HapLoadError,
  load,
  openPool,
  freePool,
  callSync,
  callAsync,
  versionString,
  statusName,
};
