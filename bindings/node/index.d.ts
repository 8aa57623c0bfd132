// Types for hap-oauth (CommonJS; also importable from ESM).

/** libhap configuration (docs/ABI.md, `hap_pool_open`). Every key is optional. */
export interface PoolConfig {
  /** Pool key inside the pool file (`credential_pool.<provider>`). Default "anthropic". */
  provider?: string;
  /** Hermes auth.json; null = no pool file. Default $HERMES_HOME/auth.json or ~/.hermes/auth.json (unused when that directory does not exist). */
  poolPath?: string | null;
  /** Claude Code's .credentials.json; null = none. */
  credentialsPath?: string | null;
  /** Where Claude Code's login lives: the file, the macOS Keychain item (file as fallback), or 'auto' (keychain on macOS only). Default 'auto'. */
  credentialsStore?: 'file' | 'keychain' | 'auto';
  /** The `security` program the Keychain store runs. Default /usr/bin/security. */
  securityProgram?: string;
  /** Token endpoints tried in order; http:// only for loopback. */
  tokenUrls?: string[];
  clientId?: string;
  userAgent?: string;
  /** Refresh when the access token expires within this. Default 300000, at most 86400000. */
  refreshSkewMs?: number;
  strategy?: 'fill_first' | 'round_robin' | 'least_used' | 'random';
  /** Longest wait for any lock. Default 45000, at most 3600000. */
  lockTimeoutMs?: number;
  /** Per token-endpoint request. Default 30000, 1 to 3600000. */
  httpTimeoutMs?: number;
  /** Also take Claude Code's own refresh lock. Default true. */
  claudeCodeLock?: boolean;
  /** Seed a claude_code row from the credentials file. Default true. */
  adoptExternalLogins?: boolean;
  /**
   * Claude Code owns its login: hap never refreshes it, serves it while valid, adopts
   * Claude Code's rotations, else UNAVAILABLE (run `claude`). Default false. For one
   * person's own processes only (Anthropic's terms).
   */
  deferRefreshToClaudeCode?: boolean;
  /**
   * The fleet authority (docs/FLEET.md): redis://user@host:port/db or rediss://..., no
   * password in it. For one person's own hosts. Needs a libhap built with the feature `redis`.
   */
  redisUrl?: string | null;
  /** File whose first line is the Redis ACL user's password (else $HAP_REDIS_PASSWORD). */
  redisPasswordFile?: string | null;
  /** Prefix of the fleet's Redis keys. Default "hap:". */
  redisPrefix?: string | null;
  /** PEM CA for a rediss:// server with a private CA. */
  redisCaFile?: string | null;
  /** The refresh lease's time to live. Default 10000, 100 to 3600000. */
  redisLeaseMs?: number;
  /** Defer to a running `hap agent` (docs/AGENT.md). Default 'off'. */
  agent?: 'off' | 'prefer' | 'require';
}

/** The same configuration with libhap's own snake_case keys (e.g. from a JSON file). */
export interface RawPoolConfig {
  provider?: string;
  pool_path?: string | null;
  credentials_path?: string | null;
  credentials_store?: 'file' | 'keychain' | 'auto';
  security_program?: string;
  token_urls?: string[];
  client_id?: string;
  user_agent?: string;
  refresh_skew_ms?: number;
  strategy?: 'fill_first' | 'round_robin' | 'least_used' | 'random';
  lock_timeout_ms?: number;
  http_timeout_ms?: number;
  claude_code_lock?: boolean;
  adopt_external_logins?: boolean;
  defer_refresh_to_claude_code?: boolean;
  redis_url?: string | null;
  redis_password_file?: string | null;
  redis_prefix?: string | null;
  redis_ca_file?: string | null;
  redis_lease_ms?: number;
  /** Replicas that must acknowledge each marker and commit (Redis WAIT); 0: none. docs/FLEET.md */
  redis_wait_replicas?: number;
  redis_wait_timeout_ms?: number;
  /** Redis Sentinel: "host:port" each; redis_url then names the master, e.g. redis://user@mymaster/0. */
  redis_sentinels?: string[] | null;
  redis_sentinel_master?: string | null;
  agent?: 'off' | 'prefer' | 'require';
}

/** Options of this binding (not sent to libhap). */
export interface PoolOptions {
  /**
   * Most async calls of this Pool running at once on libuv workers (default 2);
   * the rest wait in JS, so a slow refresh cannot take every libuv worker.
   */
  maxConcurrentCalls?: number;
}

export interface ResolveOptions {
  /** Required remaining validity; default the pool's refreshSkewMs. */
  minValidityMs?: number;
  /** Use only this credential. */
  credentialId?: string;
  /** Refresh even if the token is still valid. */
  forceRefresh?: boolean;
}

/** What the API answered when a token was used (`hap_report_failure`'s failure). */
export interface Failure {
  credentialId: string;
  /** HTTP status the API answered, e.g. 401, 429. */
  statusCode: number;
  /** e.g. 'rate_limit_error', 'token_revoked'. */
  reason?: string;
  message?: string;
  /** Epoch seconds, epoch ms, ISO-8601, or a Date. */
  resetAt?: number | string | Date;
  retryAfterS?: number;
}

/** @deprecated Use Failure (docs/GLOSSARY.md); the same type. */
export type FailureReport = Failure;

/** A credential's `last_status`. */
export type CredentialState = 'ok' | 'refresh_pending' | 'exhausted' | 'dead';
/** @deprecated Use CredentialState (docs/GLOSSARY.md); the same type. */
export type CredentialStatus = CredentialState;

/** What the pool did with a reported failure. */
export interface FailureResult {
  credentialId: string;
  lastStatus: CredentialState;
  /** Epoch ms; null for ok, refresh_pending and dead. */
  availableAtMs: number | null;
  [extra: string]: unknown;
}
/** @deprecated Use FailureResult (docs/GLOSSARY.md); the same type. */
export type ReportResult = FailureResult;

export interface CredentialSnapshot {
  credentialId: string;
  label: string | null;
  source: string | null;
  authType: 'oauth' | 'api_key';
  priority: number;
  lastStatus: CredentialState | null;
  available: boolean;
  availableAtMs: number | null;
  expiresAtMs: number | null;
  /** The credential's store holds an access token. */
  hasToken: boolean;
  lastErrorCode: number | null;
  lastErrorReason: string | null;
  requestCount: number;
  [extra: string]: unknown;
}

export interface PoolStatus {
  provider: string;
  poolPath: string | null;
  credentialsPath: string | null;
  strategy: string;
  credentials: CredentialSnapshot[];
  counters: {
    resolves: number;
    refreshPosts: number;
    refreshAdopted: number;
    journalRecoveries: number;
    lockWaits: number;
    storeReads: number;
    storeWrites: number;
    [extra: string]: number;
  };
  [extra: string]: unknown;
}

/**
 * A resolved token. `accessToken` is readable but hidden from util.inspect,
 * console.log, JSON.stringify, spreading and Object.keys.
 */
export declare class Token {
  private constructor();
  /** The secret: send it as `Authorization: Bearer <accessToken>`. */
  readonly accessToken: string;
  readonly credentialId: string;
  readonly label: string | null;
  readonly source: string | null;
  readonly authType: 'oauth' | 'api_key';
  /** Epoch ms; null for tokens without expiry (API keys). */
  readonly expiresAtMs: number | null;
  /** True when this call's own POST produced the token. */
  readonly refreshed: boolean;
  /** Everything but the secret. */
  toJSON(): Omit<Token, 'accessToken' | 'toJSON'>;
}
/** @deprecated Use Token (docs/GLOSSARY.md); the same class. */
export declare const TokenResult: typeof Token;
/** @deprecated Use Token (docs/GLOSSARY.md); the same class. */
export type TokenResult = Token;

export declare class Pool {
  /**
   * Opens a pool (reads and validates the stores; no network).
   * @throws HapError (e.g. InvalidArgumentError, StoreCorruptError), HapLoadError
   */
  constructor(config?: PoolConfig | RawPoolConfig | string | null, options?: PoolOptions);
  /** True once close() has been called. */
  readonly closed: boolean;
  /** Resolves a token on a libuv worker thread; the event loop keeps running. */
  resolveToken(options?: ResolveOptions): Promise<Token>;
  /** Resolves a token on the calling thread (blocks it during a refresh). */
  resolveTokenSync(options?: ResolveOptions): Token;
  /** Reports what happened when a token was used; on a worker thread. */
  reportFailure(failure: Failure): Promise<FailureResult>;
  reportFailureSync(failure: Failure): FailureResult;
  /** A snapshot without secrets; synchronous (no lock, no network). */
  status(): PoolStatus;
  /** Releases the native pool. Idempotent; later calls throw PoolClosedError. */
  close(): void;
}

export declare const Status: {
  readonly OK: 0;
  readonly INVALID_ARGUMENT: 1;
  readonly NO_CREDENTIAL: 2;
  readonly REAUTH_REQUIRED: 3;
  readonly UNAVAILABLE: 4;
  readonly LOCK_TIMEOUT: 5;
  readonly STORE_CORRUPT: 6;
  readonly IO: 7;
  readonly UNKNOWN_CREDENTIAL: 8;
  readonly INTERNAL: 100;
};

export type StatusCode =
  | 'HAP_STATUS_INVALID_ARGUMENT'
  | 'HAP_STATUS_NO_CREDENTIAL'
  | 'HAP_STATUS_REAUTH_REQUIRED'
  | 'HAP_STATUS_UNAVAILABLE'
  | 'HAP_STATUS_LOCK_TIMEOUT'
  | 'HAP_STATUS_STORE_CORRUPT'
  | 'HAP_STATUS_IO'
  | 'HAP_STATUS_UNKNOWN_CREDENTIAL'
  | 'HAP_STATUS_INTERNAL';

/** A non-zero hap_status. Statuses this package does not know arrive as plain HapError. */
export declare class HapError extends Error {
  /** The hap_status value. */
  readonly status: number;
  /** The status name, e.g. 'HAP_STATUS_NO_CREDENTIAL'. */
  readonly code: StatusCode | (string & {});
  /** Epoch ms when a credential comes back by itself, or null. */
  readonly retryAtMs: number | null;
  readonly credentialId: string | null;
  /** The store file involved (STORE_CORRUPT, IO), or null. */
  readonly path: string | null;
}
export declare class InvalidArgumentError extends HapError {
  readonly status: 1;
}
export declare class NoCredentialError extends HapError {
  readonly status: 2;
}
export declare class ReauthRequiredError extends HapError {
  readonly status: 3;
}
export declare class UnavailableError extends HapError {
  readonly status: 4;
}
export declare class LockTimeoutError extends HapError {
  readonly status: 5;
}
export declare class StoreCorruptError extends HapError {
  readonly status: 6;
}
export declare class IoError extends HapError {
  readonly status: 7;
}
/** @deprecated Use IoError (docs/GLOSSARY.md); the same class. */
export declare const StoreIoError: typeof IoError;
/** @deprecated Use IoError (docs/GLOSSARY.md); the same class. */
export type StoreIoError = IoError;
export declare class UnknownCredentialError extends HapError {
  readonly status: 8;
}
export declare class InternalError extends HapError {
  readonly status: 100;
}

/** A call on a Pool after close(). */
export declare class PoolClosedError extends Error {
  readonly code: 'ERR_HAP_POOL_CLOSED';
}

/** libhap could not be found or loaded, or speaks another ABI. */
export declare class HapLoadError extends Error {
  readonly code: 'ERR_HAP_LOAD';
  /** Every path tried, in order. */
  readonly tried: string[];
}

/** The loaded library's version string, e.g. "hap 0.1.0 (abi 0.1)". Loads libhap. */
export declare function version(): string;
/** The loaded library's ABI version. Loads libhap. */
export declare function abiVersion(): { major: number; minor: number };
/** Absolute path of the libhap this process loaded. Loads libhap. */
export declare function libraryPath(): string;
/** libhap's static name for a status value ("HAP_STATUS_UNKNOWN" for unknown values). */
export declare function statusName(status: number): string;

/** The `anthropic-beta` value that OAuth bearer tokens need: "oauth-2025-04-20". */
export declare const OAUTH_BETA: 'oauth-2025-04-20';

/** A WHATWG fetch: the global one, or anything with its signature. */
export type FetchFunction = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export interface CreateFetchOptions {
  /** An open Pool, opened once and shared by every request of the process. */
  pool: Pool;
  /** The fetch to wrap. Default: globalThis.fetch. */
  fetch?: FetchFunction;
  /** Passed to every pool.resolveToken (e.g. { minValidityMs }). */
  resolveOptions?: ResolveOptions;
}

/**
 * A fetch that sends every request with the pool's token (`Authorization:
 * Bearer`, `anthropic-beta` with oauth-2025-04-20, no `x-api-key`) and reports
 * 401/429 to the pool. A 401 gets one refresh and one retry; a 429 is retried
 * once only when the pool hands out another credential, else handed back.
 * Rejects with the pool's HapError (e.g. NoCredentialError) when there is no
 * token to send.
 */
export declare function createFetch(options: CreateFetchOptions): FetchFunction;
