'use strict';
// hap_status values as JS errors: one class per status so callers can
// `instanceof NoCredentialError`, and `code` for those who switch on strings.

const Status = Object.freeze({
  OK: 0,
  INVALID_ARGUMENT: 1,
  NO_CREDENTIAL: 2,
  REAUTH_REQUIRED: 3,
  UNAVAILABLE: 4,
  LOCK_TIMEOUT: 5,
  STORE_CORRUPT: 6,
  IO: 7,
  UNKNOWN_CREDENTIAL: 8,
  INTERNAL: 100,
});

class HapError extends Error {
  constructor(message, { status, code, retryAtMs = null, credentialId = null, path = null } = {}) {
    super(message);
    /** The hap_status value (number). */
    this.status = status;
    /** The status name, e.g. 'HAP_STATUS_NO_CREDENTIAL'. */
    this.code = code;
    /** Epoch ms when a credential comes back by itself, or null. */
    this.retryAtMs = retryAtMs;
    this.credentialId = credentialId;
    /** The store file involved (STORE_CORRUPT, IO), or null. */
    this.path = path;
  }
}

class InvalidArgumentError extends HapError {}
class NoCredentialError extends HapError {}
class ReauthRequiredError extends HapError {}
class UnavailableError extends HapError {}
class LockTimeoutError extends HapError {}
class StoreCorruptError extends HapError {}
class IoError extends HapError {}
class UnknownCredentialError extends HapError {}
class InternalError extends HapError {}

for (const Cls of [
  HapError,
  InvalidArgumentError,
  NoCredentialError,
  ReauthRequiredError,
  UnavailableError,
  LockTimeoutError,
  StoreCorruptError,
  IoError,
  UnknownCredentialError,
  InternalError,
]) {
  // On the prototype, so `name` is not an own property cluttering inspect output.
  Object.defineProperty(Cls.prototype, 'name', { value: Cls.name, configurable: true, writable: true });
}

const CLASS_BY_STATUS = new Map([
  [Status.INVALID_ARGUMENT, InvalidArgumentError],
  [Status.NO_CREDENTIAL, NoCredentialError],
  [Status.REAUTH_REQUIRED, ReauthRequiredError],
  [Status.UNAVAILABLE, UnavailableError],
  [Status.LOCK_TIMEOUT, LockTimeoutError],
  [Status.STORE_CORRUPT, StoreCorruptError],
  [Status.IO, IoError],
  [Status.UNKNOWN_CREDENTIAL, UnknownCredentialError],
  [Status.INTERNAL, InternalError],
]);

const NAME_BY_STATUS = new Map(Object.entries(Status).map(([k, v]) => [v, `HAP_STATUS_${k}`]));

// Build the error for a non-zero status from libhap's error JSON (which may be
// null when the caller passed no error_out, or unparsable if something is badly
// wrong). Any status this package does not know is a generic HapError, as
// docs/ABI.md asks.
function errorFromStatus(status, errorJson) {
  let detail = {};
  if (errorJson) {
    try {
      detail = JSON.parse(errorJson);
    } catch {
      detail = {};
    }
  }
  const code =
    typeof detail.name === 'string' ? detail.name : NAME_BY_STATUS.get(status) || 'HAP_STATUS_UNKNOWN';
  const message = typeof detail.message === 'string' && detail.message ? detail.message : code;
  const Cls = CLASS_BY_STATUS.get(status) || HapError;
  return new Cls(message, {
    status,
    code,
    retryAtMs: detail.retry_at_ms ?? null,
    credentialId: detail.credential_id ?? null,
    path: detail.path ?? null,
  });
}

class PoolClosedError extends Error {
  constructor() {
    super('hap Pool is closed');
    this.code = 'ERR_HAP_POOL_CLOSED';
  }
}

Object.defineProperty(PoolClosedError.prototype, 'name', {
  value: 'PoolClosedError',
  configurable: true,
  writable: true,
});

module.exports = {
  Status,
  HapError,
  InvalidArgumentError,
  NoCredentialError,
  ReauthRequiredError,
  UnavailableError,
  LockTimeoutError,
  StoreCorruptError,
  IoError,
  /** @deprecated The same class as IoError (docs/GLOSSARY.md); kept for existing code. */
  StoreIoError: IoError,
  UnknownCredentialError,
  InternalError,
  PoolClosedError,
  errorFromStatus,
};
