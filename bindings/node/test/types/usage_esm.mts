// The same package from an ES module: default and named imports.
import hap, { Pool, type TokenResult } from 'hap-oauth';

const pool: Pool = new hap.Pool({ poolPath: null });
const token: TokenResult = await pool.resolveToken();
const same: typeof Pool = hap.Pool;
console.log(token.credentialId, same === Pool);
pool.close();
