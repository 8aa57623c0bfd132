'use strict';
// libhap driven the way an existing ffi-napi user would write it (ref-napi
// types, ffi.Library). Test and benchmark code only: hap-oauth itself uses koffi.

const path = require('node:path');
const ffi = require('@2060.io/ffi-napi');
const ref = require('@2060.io/ref-napi');

const voidPtr = ref.refType(ref.types.void);
const voidPtrPtr = ref.refType(voidPtr);

function libraryPath() {
  if (process.env.HAP_LIBRARY_PATH) return path.resolve(process.env.HAP_LIBRARY_PATH);
  return path.resolve(__dirname, '..', '..', '..', '..', 'target', 'release', 'libhap.so');
}

function open(libPath = libraryPath()) {
  const lib = ffi.Library(libPath, {
    hap_abi_version: ['uint32', []],
    hap_version: ['string', []],
    hap_status_name: ['string', ['int32']],
    hap_pool_open: ['int32', ['string', voidPtrPtr, voidPtrPtr]],
    hap_resolve_token: ['int32', [voidPtr, 'string', voidPtrPtr, voidPtrPtr]],
    hap_report_failure: ['int32', [voidPtr, 'string', voidPtrPtr, voidPtrPtr]],
    hap_pool_status: ['int32', [voidPtr, voidPtrPtr, voidPtrPtr]],
    hap_pool_free: ['void', [voidPtr]],
    hap_free: ['void', [voidPtr]],
  });

  // The owned-string rule, ffi-napi flavour: read the C string behind the
  // out-param, then hand the pointer back to hap_free (never libc free).
  function takeOwned(slot) {
    const ptr = slot.deref();
    if (ref.isNull(ptr)) return null;
    try {
      return ref.readCString(ptr, 0);
    } finally {
      lib.hap_free(ptr);
    }
  }

  function fail(status, errSlot) {
    const json = takeOwned(errSlot);
    const detail = json ? JSON.parse(json) : { name: lib.hap_status_name(status), message: '' };
    const err = new Error(`${detail.name}: ${detail.message}`);
    err.status = status;
    err.detail = detail;
    return err;
  }

  // (pool, input) -> parsed JSON out, or throws with the error JSON attached.
  function call(fn, pool, input) {
    const out = ref.alloc(voidPtr);
    const err = ref.alloc(voidPtr);
    const status = input === undefined ? fn(pool, out, err) : fn(pool, input, out, err);
    if (status !== 0) {
      takeOwned(out);
      throw fail(status, err);
    }
    return takeOwned(out);
  }

  return {
    lib,
    abiVersion: () => lib.hap_abi_version(),
    version: () => lib.hap_version(),
    openPool(config) {
      const poolSlot = ref.alloc(voidPtr);
      const err = ref.alloc(voidPtr);
      const status = lib.hap_pool_open(config === null ? null : JSON.stringify(config), poolSlot, err);
      if (status !== 0) throw fail(status, err);
      return poolSlot.deref();
    },
    resolveJson: (pool, request = null) =>
      call(lib.hap_resolve_token, pool, request === null ? null : JSON.stringify(request)),
    resolve: (pool, request = null) =>
      JSON.parse(call(lib.hap_resolve_token, pool, request === null ? null : JSON.stringify(request))),
    report: (pool, failure) => JSON.parse(call(lib.hap_report_failure, pool, JSON.stringify(failure))),
    status: (pool) => JSON.parse(call(lib.hap_pool_status, pool, undefined)),
    freePool: (pool) => lib.hap_pool_free(pool),
    // Async through ffi-napi's own worker (fn.async), for callers who need it.
    resolveAsync(pool, request = null) {
      return new Promise((resolve, reject) => {
        const out = ref.alloc(voidPtr);
        const err = ref.alloc(voidPtr);
        lib.hap_resolve_token.async(pool, request === null ? null : JSON.stringify(request), out, err, (e, status) => {
          if (e) return reject(e);
          if (status !== 0) {
            takeOwned(out);
            return reject(fail(status, err));
          }
          try {
            resolve(JSON.parse(takeOwned(out)));
          } catch (parseError) {
            reject(parseError);
          }
        });
      });
    },
  };
}

module.exports = { open, libraryPath };
