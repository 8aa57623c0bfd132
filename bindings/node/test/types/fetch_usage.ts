// createFetch's declarations: ordinary use compiles, misuse does not.
import { Pool, createFetch, OAUTH_BETA, type FetchFunction } from 'hap-oauth';

async function main(): Promise<void> {
  const pool = new Pool();
  const hapFetch: FetchFunction = createFetch({ pool });
  const wrapped = createFetch({ pool, fetch: globalThis.fetch, resolveOptions: { minValidityMs: 60_000 } });
  // A drop-in for the global fetch.
  const asGlobal: typeof globalThis.fetch = hapFetch;
  const res: Response = await wrapped('http://127.0.0.1:1/v1/messages', { method: 'POST', body: '{}' });
  const beta: 'oauth-2025-04-20' = OAUTH_BETA;
  void asGlobal;
  void res;
  void beta;

  // @ts-expect-error a pool is required
  createFetch({});
  // @ts-expect-error resolveOptions are ResolveOptions
  createFetch({ pool, resolveOptions: { minValidity: 1 } });
  pool.close();
}

void main;
