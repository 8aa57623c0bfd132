'use strict';
// createFetch: a fetch-compatible function that sends every request with the
// pool's token and tells the pool what the API answered, so that callers
// (and SDKs that accept a `fetch` option) need no glue of their own.
//
// Per request: resolve a token (a hot resolve is a few microseconds, so it is
// done every time: a sibling's refresh is picked up at once), set
// `Authorization: Bearer`, add `oauth-2025-04-20` to `anthropic-beta`, drop
// `x-api-key`, send.
//
// - 401: the token was refused. Report it, resolve again (libhap refreshes, one
//   POST machine-wide) and send once more with the new token. A second 401 is
//   reported too and handed back: no second refresh from here.
// - 429: report it (libhap benches the credential until the reset the headers
//   name). Send once more only if the pool now hands out *another* credential;
//   otherwise hand the 429 back, so the caller's own retry policy (the SDK's
//   maxRetries and back-off) decides: at most 1 + maxRetries requests, no storm.
//
// A body that is a stream cannot be sent twice: such a request is reported
// but never retried (one process warning says so).

const { HapError, PoolClosedError } = require('./errors.js');

const OAUTH_BETA = 'oauth-2025-04-20';

// A 401 is first checked against what the pool serves now (after401): libhap
// judges a reported 401 against the token this handle last served for the row,
// so the late 401 of an old token, reported after a concurrent request's
// refresh, would read as "the token that refresh produced is refused too" and
// bench a good credential (the 8-concurrent SDK test fails without the check).
// Check and report run one at a time per (pool, credential), so that another
// request's refresh cannot fall between them.
const pending401 = new WeakMap(); // Pool -> Map<credentialId, Promise>

function serialized(pool, credentialId, fn) {
  let chains = pending401.get(pool);
  if (!chains) {
    chains = new Map();
    pending401.set(pool, chains);
  }
  const prev = chains.get(credentialId) ?? Promise.resolve();
  const run = prev.then(fn);
  const tail = run.then(
    () => {},
    () => {},
  );
  chains.set(credentialId, tail);
  tail.then(() => {
    if (chains.get(credentialId) === tail) chains.delete(credentialId);
  });
  return run;
}

function isReplayableBody(body) {
  if (body === undefined || body === null) return true;
  if (typeof body === 'string') return true;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) return true;
  if (typeof Blob !== 'undefined' && body instanceof Blob) return true;
  if (body instanceof URLSearchParams) return true;
  if (typeof FormData !== 'undefined' && body instanceof FormData) return true;
  return false; // ReadableStream, Node stream, async iterable: read once
}

function mergeBeta(headers) {
  const values = (headers.get('anthropic-beta') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  if (!values.includes(OAUTH_BETA)) values.push(OAUTH_BETA);
  headers.set('anthropic-beta', values.join(','));
}

// Retry-After: delta-seconds or an HTTP date. Anthropic's unified limit reset
// (anthropic-ratelimit-unified-reset) comes as epoch seconds. Only values that
// libhap accepts are passed on (it rejects the whole report otherwise):
// retry_after_s at most a year (clamped), reset_at before the year 10000.
const MAX_RETRY_AFTER_S = 31_536_000;
const MAX_RESET_MS = Date.UTC(10000, 0, 1) - 1;

function rateLimitInfo(res) {
  const info = {};
  const retryAfter = res.headers.get('retry-after');
  if (retryAfter !== null) {
    const s = Number(retryAfter.trim());
    if (retryAfter.trim() !== '' && Number.isFinite(s) && s >= 0) {
      info.retryAfterS = Math.min(s, MAX_RETRY_AFTER_S);
    } else {
      const at = Date.parse(retryAfter);
      if (Number.isFinite(at)) info.retryAfterS = Math.min(Math.max(0, Math.ceil((at - Date.now()) / 1000)), MAX_RETRY_AFTER_S);
    }
  }
  const reset = res.headers.get('anthropic-ratelimit-unified-reset');
  if (reset !== null) {
    const n = Number(reset.trim());
    let ms;
    if (reset.trim() !== '' && Number.isFinite(n)) ms = n > 1e12 ? n : n * 1000; // epoch s (or ms)
    else ms = Date.parse(reset);
    if (ms > 0 && ms <= MAX_RESET_MS) info.resetAt = Math.round(ms); // epoch ms: libhap reads > 1e12 as ms
  }
  return info;
}

let warnedStreamBody = false;
function warnStreamBody(status) {
  if (warnedStreamBody) return;
  warnedStreamBody = true;
  process.emitWarning(
    `hap-oauth: a request with a stream body got ${status}; it was reported to the pool but not retried, ` +
      'because a stream cannot be sent twice. Pass the body as a string, Buffer or Blob to have it retried.',
    { code: 'HAP_FETCH_STREAM_BODY' },
  );
}

function isPoolError(err) {
  return err instanceof HapError || err instanceof PoolClosedError;
}

// A failed report must not cost the caller the API's response; it is said
// once per occurrence as a process warning (errors never hold tokens).
async function report(pool, failure) {
  try {
    return await pool.reportFailure(failure);
  } catch (err) {
    if (!isPoolError(err)) throw err;
    process.emitWarning(`hap-oauth: reporting ${failure.statusCode} for credential ${failure.credentialId} failed: ${err.message}`, {
      code: 'HAP_REPORT_FAILED',
    });
    return null;
  }
}

// null when the pool has nothing to hand out (the caller then gets the API's
// response as it was); the next request's own resolve raises the error.
async function tryResolve(pool, options) {
  try {
    return await pool.resolveToken(options);
  } catch (err) {
    if (isPoolError(err)) return null;
    throw err;
  }
}

async function discard(res) {
  try {
    await res.body?.cancel();
  } catch {
    // Already consumed or errored: nothing to free.
  }
}

/**
 * A fetch-compatible function that authenticates every request with a token
 * from `pool` and reports 401/429 back to it (see the top of this file).
 *
 * @param {object} options
 * @param {import('../index.js').Pool} options.pool an open Pool, shared by every request (open it once)
 * @param {Function} [options.fetch] the fetch to wrap (default: globalThis.fetch)
 * @param {object} [options.resolveOptions] passed to pool.resolveToken (e.g. { minValidityMs })
 */
function createFetch(options) {
  const { pool, fetch: baseFetch = globalThis.fetch, resolveOptions } = options ?? {};
  if (!pool || typeof pool.resolveToken !== 'function' || typeof pool.reportFailure !== 'function') {
    throw new TypeError('createFetch needs { pool }: a hap-oauth Pool, opened once and shared by every request');
  }
  if (typeof baseFetch !== 'function') {
    throw new TypeError('createFetch: `fetch` must be a function (Node 20 has a global fetch)');
  }
  if (resolveOptions !== undefined && (resolveOptions === null || typeof resolveOptions !== 'object')) {
    throw new TypeError('createFetch: `resolveOptions` must be an object');
  }

  async function after401(used, retry) {
    return serialized(pool, used.credentialId, async () => {
      const current = await tryResolve(pool, { ...resolveOptions, credentialId: used.credentialId });
      if (current && current.accessToken !== used.accessToken) {
        // Another request (or process) already replaced the refused token.
        return retry ? current : null;
      }
      await report(pool, { credentialId: used.credentialId, statusCode: 401, reason: 'authentication_error' });
      if (!retry) return null;
      const fresh = await tryResolve(pool, resolveOptions);
      return fresh && fresh.accessToken !== used.accessToken ? fresh : null;
    });
  }

  async function after429(used, res, retry) {
    await report(pool, {
      credentialId: used.credentialId,
      statusCode: 429,
      reason: 'rate_limit_error',
      ...rateLimitInfo(res),
    });
    if (!retry) return null;
    const other = await tryResolve(pool, resolveOptions);
    return other && other.credentialId !== used.credentialId ? other : null;
  }

  return async function hapFetch(input, init = undefined) {
    const base = init ?? {};
    const isRequest = typeof Request !== 'undefined' && input instanceof Request;
    const headers = new Headers(isRequest ? input.headers : undefined);
    if (base.headers !== undefined && base.headers !== null) {
      for (const [name, value] of new Headers(base.headers)) headers.set(name, value);
    }
    headers.delete('x-api-key');
    mergeBeta(headers);

    let replayable;
    let spare = null;
    if (base.body !== undefined && base.body !== null) {
      replayable = isReplayableBody(base.body);
    } else if (isRequest && input.body !== null) {
      // A Request's own body is read by the first send: keep a copy for one retry.
      spare = input.clone();
      replayable = true;
    } else {
      replayable = true;
    }

    const send = (token, target) => {
      const h = new Headers(headers);
      h.set('authorization', `Bearer ${token.accessToken}`);
      return baseFetch(target, { ...base, headers: Object.fromEntries(h) });
    };

    const token = await pool.resolveToken(resolveOptions);
    const res = await send(token, input);
    if (res.status !== 401 && res.status !== 429) return res;

    const retry = replayable && !base.signal?.aborted;
    if (!replayable) warnStreamBody(res.status);
    const next = res.status === 401 ? await after401(token, retry) : await after429(token, res, retry);
    if (next === null || base.signal?.aborted) return res;

    await discard(res);
    const again = await send(next, spare ?? input);
    // Reported, never retried from here again: the caller's policy takes over.
    if (again.status === 401) await after401(next, false);
    else if (again.status === 429) await after429(next, again, false);
    return again;
  };
}

module.exports = { createFetch, OAUTH_BETA };
