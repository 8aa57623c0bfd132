'use strict';
// hap-oauth: the idiomatic layer over libhap. Raw declarations and pointer
// handling live in lib/ffi.js; errors in lib/errors.js.

const util = require('node:util');
const ffi = require('./lib/ffi.js');
const errors = require('./lib/errors.js');
const { createFetch, OAUTH_BETA } = require('./lib/fetch.js');

const { errorFromStatus, PoolClosedError, HapError, Status } = errors;

// JS callers write camelCase, libhap reads snake_case. Keys that are already
// snake_case pass through, and so do unknown keys: libhap rejects those with
// INVALID_ARGUMENT naming the key, which is the error users should see.
function snakeKey(key) {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

function camelKey(key) {
  return key.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
}

function camelDeep(value) {
  if (Array.isArray(value)) return value.map(camelDeep);
  if (value && typeof value === 'object') {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[camelKey(k)] = camelDeep(v);
    return out;
  }
  return value;
}

function toWireJson(what, value, { dates = false } = {}) {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value; // raw JSON, passed as is
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${what} must be an object, a JSON string or undefined`);
  }
  const wire = {};
  for (const [k, v] of Object.entries(value)) {
    if (v === undefined) continue;
    wire[snakeKey(k)] = dates && v instanceof Date ? v.getTime() : v;
  }
  return Object.keys(wire).length === 0 ? null : JSON.stringify(wire);
}

function unwrap(settled) {
  if (settled.status !== Status.OK) throw errorFromStatus(settled.status, settled.error);
  if (settled.out === null) {
    throw new HapError('libhap reported success without a result', {
      status: Status.INTERNAL,
      code: 'HAP_STATUS_INTERNAL',
    });
  }
  return JSON.parse(settled.out);
}

const REDACTED = '[redacted]';

/**
 * A resolved token. `accessToken` is readable, but it is not an own
 * enumerable property: util.inspect, console.log, JSON.stringify, spreading
 * and Object.keys all leave the secret out.
 */
class Token {
  #accessToken;

  constructor(raw) {
    this.#accessToken = raw.access_token;
    this.credentialId = raw.credential_id;
    this.label = raw.label ?? null;
    this.source = raw.source ?? null;
    this.authType = raw.auth_type;
    this.expiresAtMs = raw.expires_at_ms ?? null;
    this.refreshed = raw.refreshed === true;
  }

  /** The secret: send it as `Authorization: Bearer <accessToken>`. */
  get accessToken() {
    return this.#accessToken;
  }

  toJSON() {
    return { ...this };
  }

  [util.inspect.custom](depth, options, inspect) {
    const shown = { accessToken: REDACTED, ...this };
    return `Token ${inspect(shown, { ...options, depth: options.depth === null ? null : options.depth - 1 })}`;
  }
}

// A pool nobody closed is freed when it is garbage collected: a backstop only
// (close() is the contract; GC timing is unknowable). Every async call holds
// a reference to its Pool, so nothing in flight is ever collected.
const reaper = new FinalizationRegistry((handle) => {
  try {
    ffi.freePool(handle);
  } catch {
    // Nothing sensible to do while finalizing.
  }
});

// Each async call occupies a libuv worker for as long as libhap blocks (a lock
// wait plus a refresh can take seconds). libuv has 4 workers by default, shared
// with fs, dns and crypto, so one Pool uses at most this many at a time and
// queues the rest in JS.
const DEFAULT_MAX_CONCURRENT_CALLS = 2;

class Pool {
  #handle = null;
  #closed = false;
  #inFlight = 0;
  #waiting = [];
  #maxConcurrentCalls;

  /**
   * @param config libhap config (docs/ABI.md), camelCase or snake_case keys, or a JSON string.
   * @param options binding options: { maxConcurrentCalls }.
   */
  constructor(config = undefined, options = {}) {
    const max = options.maxConcurrentCalls ?? DEFAULT_MAX_CONCURRENT_CALLS;
    if (!Number.isInteger(max) || max < 1) throw new TypeError('maxConcurrentCalls must be a positive integer');
    this.#maxConcurrentCalls = max;
    const opened = ffi.openPool(toWireJson('config', config));
    if (opened.status !== Status.OK) throw errorFromStatus(opened.status, opened.error);
    this.#handle = opened.handle;
    reaper.register(this, opened.handle, this);
  }

  /** True once close() has been called. */
  get closed() {
    return this.#closed;
  }

  /** Resolve a token on a worker thread; the event loop keeps running meanwhile. */
  async resolveToken(options = undefined) {
    const request = toWireJson('options', options);
    return new Token(unwrap(await this.#callAsync('hap_resolve_token', [request])));
  }

  /** Resolve a token on the calling thread (blocks it; for scripts and CLIs). */
  resolveTokenSync(options = undefined) {
    const request = toWireJson('options', options);
    return new Token(unwrap(this.#callSync('hap_resolve_token', [request])));
  }

  /** Report what happened when a token was used (e.g. a 429), on a worker thread. */
  async reportFailure(failure) {
    const wire = this.#failureJson(failure);
    return camelDeep(unwrap(await this.#callAsync('hap_report_failure', [wire])));
  }

  /** reportFailure on the calling thread. */
  reportFailureSync(failure) {
    const wire = this.#failureJson(failure);
    return camelDeep(unwrap(this.#callSync('hap_report_failure', [wire])));
  }

  /**
   * A snapshot of the pool, without secrets. Synchronous: libhap answers from
   * what it knows and takes no lock and makes no request for it.
   */
  status() {
    return camelDeep(unwrap(this.#callSync('hap_pool_status', [])));
  }

  /**
   * Release the native pool. Idempotent. Calls made afterwards throw
   * PoolClosedError; calls already running finish first, then the handle is freed.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    reaper.unregister(this);
    const waiting = this.#waiting;
    this.#waiting = [];
    for (const w of waiting) w.reject(new PoolClosedError());
    if (this.#inFlight === 0) this.#release();
  }

  [Symbol.dispose ?? Symbol.for('nodejs.dispose')]() {
    this.close();
  }

  [util.inspect.custom]() {
    return `Pool { closed: ${this.#closed}, inFlight: ${this.#inFlight} }`;
  }

  #failureJson(failure) {
    if (!failure || typeof failure !== 'object') {
      throw new TypeError('reportFailure needs an object with credentialId and statusCode');
    }
    return toWireJson('failure', failure, { dates: true });
  }

  #release() {
    const handle = this.#handle;
    this.#handle = null;
    if (handle !== null) ffi.freePool(handle);
  }

  #callSync(name, args) {
    if (this.#closed) throw new PoolClosedError();
    return ffi.callSync(name, [this.#handle, ...args]);
  }

  async #callAsync(name, args) {
    if (this.#closed) throw new PoolClosedError();
    if (this.#inFlight < this.#maxConcurrentCalls) {
      this.#inFlight += 1;
    } else {
      // The slot is handed over by the call that finishes (see finally below).
      await new Promise((resolve, reject) => this.#waiting.push({ resolve, reject }));
    }
    try {
      return await ffi.callAsync(name, [this.#handle, ...args]);
    } finally {
      const next = this.#waiting.shift();
      if (next) {
        next.resolve();
      } else {
        this.#inFlight -= 1;
        if (this.#closed && this.#inFlight === 0) this.#release();
      }
    }
  }
}

/** The loaded library's version string, e.g. "hap 0.1.0 (abi 0.1)". */
function version() {
  return ffi.versionString();
}

/** The loaded library's ABI version. */
function abiVersion() {
  return { ...ffi.load().abi };
}

/** Absolute path of the libhap this process loaded. */
function libraryPath() {
  return ffi.load().path;
}

/** The static name of a status value, from libhap (e.g. 'HAP_STATUS_NO_CREDENTIAL'). */
function statusName(status) {
  return ffi.statusName(status);
}

module.exports = {
  Pool,
  Token,
  /** @deprecated The same class as Token (docs/GLOSSARY.md); kept for existing code. */
  TokenResult: Token,
  version,
  abiVersion,
  libraryPath,
  statusName,
  createFetch,
  OAUTH_BETA,
  HapLoadError: ffi.HapLoadError,
  ...errors,
};
delete module.exports.errorFromStatus;
// For this package's tests of the status mapping; not part of the API.
Object.defineProperty(module.exports, '_errorFromStatus', { value: errorFromStatus, enumerable: false });
