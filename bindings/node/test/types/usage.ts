// Compiled with `tsc -p test/types` (noEmit): the declarations must accept
// ordinary use and reject misuse (@ts-expect-error lines fail if they compile).
import {
  Pool,
  Token,
  TokenResult,
  IoError,
  StoreIoError,
  HapError,
  NoCredentialError,
  ReauthRequiredError,
  PoolClosedError,
  HapLoadError,
  Status,
  version,
  abiVersion,
  type PoolStatus,
  type ReportResult,
  type Failure,
  type FailureReport,
  type FailureResult,
  type CredentialState,
  type CredentialStatus,
} from 'hap-oauth';

async function main(): Promise<void> {
  const pool = new Pool({
    poolPath: '/home/u/.hermes/auth.json',
    credentialsPath: '/home/u/.claude/.credentials.json',
    tokenUrls: ['http://127.0.0.1:8080/v1/oauth/token'],
    lockTimeoutMs: 10_000,
    strategy: 'round_robin',
  });
  const raw = new Pool({ pool_path: null, credentials_path: '/c.json', agent: 'prefer' }, { maxConcurrentCalls: 4 });
  raw.close();
  new Pool({ credentialsStore: 'keychain', securityProgram: '/usr/bin/security' }).close();
  new Pool({ redisUrl: 'rediss://hap-refresher@127.0.0.1:6380/0', redisPasswordFile: '/run/secrets/hap', redisLeaseMs: 10000 });
  new Pool({ credentials_store: 'file', security_program: '/usr/bin/security' }).close();
  new Pool().close();
  new Pool('{"pool_path": null}').close();

  const token: Token = await pool.resolveToken({ minValidityMs: 60_000, forceRefresh: false });
  // The deprecated names are the same class and types (docs/GLOSSARY.md).
  const old: TokenResult = token;
  const sameClass: typeof Token = TokenResult;
  const sameError: typeof IoError = StoreIoError;
  const header: string = `Bearer ${token.accessToken}`;
  const expires: number | null = token.expiresAtMs;
  const refreshed: boolean = token.refreshed;
  const sync = pool.resolveTokenSync({ credentialId: token.credentialId });
  const json: { credentialId: string; refreshed: boolean } = sync.toJSON();

  const failure: Failure = {
    credentialId: token.credentialId,
    statusCode: 429,
    reason: 'rate_limit_error',
    resetAt: new Date(),
  };
  const report: FailureResult = await pool.reportFailure(failure);
  const oldFailure: FailureReport = failure;
  const oldReport: ReportResult = report;
  const state: CredentialState = report.lastStatus;
  const oldState: CredentialStatus = state;
  if (report.lastStatus === 'exhausted' && report.availableAtMs !== null) {
    const wait: number = report.availableAtMs - Date.now();
    void wait;
  }
  pool.reportFailureSync({ credentialId: 'abc123', statusCode: 401, retryAfterS: 5 });

  const status: PoolStatus = pool.status();
  const posts: number = status.counters.refreshPosts;
  const recoveries: number = status.counters.journalRecoveries + status.counters.storeReads + status.counters.storeWrites;
  for (const c of status.credentials) {
    const id: string = c.credentialId;
    const available: boolean = c.available;
    const hasToken: boolean = c.hasToken;
    void id;
    void available;
    void hasToken;
  }

  try {
    await pool.resolveToken();
  } catch (err) {
    if (err instanceof NoCredentialError) {
      const retry: number | null = err.retryAtMs;
      const s: 2 = err.status;
      void retry;
      void s;
    } else if (err instanceof ReauthRequiredError) {
      console.error('log in again');
    } else if (err instanceof HapError) {
      const code: string = err.code;
      const path: string | null = err.path;
      void code;
      void path;
    } else if (err instanceof PoolClosedError || err instanceof HapLoadError) {
      console.error(err.code);
    }
  }
  const ok: 0 = Status.OK;
  const v: string = version();
  const major: number = abiVersion().major;
  pool.close();
  const closed: boolean = pool.closed;

  // @ts-expect-error accessToken is read-only
  token.accessToken = 'x';
  // @ts-expect-error TokenResult is built by the Pool only
  new TokenResult();
  // @ts-expect-error Token is built by the Pool only
  new Token();
  // @ts-expect-error statusCode is required
  await pool.reportFailure({ credentialId: 'abc123' });
  // @ts-expect-error unknown resolve option
  await pool.resolveToken({ minValidity: 5 });
  // @ts-expect-error strategy is an enum
  new Pool({ strategy: 'fastest' });
  // @ts-expect-error agent is an enum
  new Pool({ agent: 'always' });
  // @ts-expect-error credentialsStore is an enum
  new Pool({ credentialsStore: 'keyring' });
  // @ts-expect-error status() is synchronous
  await pool.status().then(() => 0);

  void [header, expires, refreshed, json, posts, recoveries, ok, v, major, closed];
  void [old, sameClass, sameError, oldFailure, oldReport, oldState];
}

void main;
