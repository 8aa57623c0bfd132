// ESM entry: the same objects as the CommonJS entry (one copy of the library state).
import hap from './index.js';

export const {
  Pool,
  Token,
  TokenResult,
  version,
  abiVersion,
  libraryPath,
  statusName,
  createFetch,
  OAUTH_BETA,
  Status,
  HapLoadError,
  HapError,
  InvalidArgumentError,
  NoCredentialError,
  ReauthRequiredError,
  UnavailableError,
  LockTimeoutError,
  StoreCorruptError,
  IoError,
  StoreIoError,
  UnknownCredentialError,
  InternalError,
  PoolClosedError,
} = hap;
export default hap;
