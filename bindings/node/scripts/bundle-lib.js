#!/usr/bin/env node
'use strict';
// Copy the built libhap into prebuilds/<platform>-<arch>/ so a packed
// hap-oauth (npm pack / publish) carries its own library. Source:
// HAP_LIBRARY_PATH, else ../../target/release/ (cargo build --release).

const fs = require('node:fs');
const path = require('node:path');

// --clean (postpack): drop the copy again, so a checkout keeps loading the
// fresh cargo build rather than a snapshot left behind by npm pack.
if (process.argv.includes('--clean')) {
  fs.rmSync(path.resolve(__dirname, '..', 'prebuilds'), { recursive: true, force: true });
  process.exit(0);
}

const name = process.platform === 'darwin' ? 'libhap.dylib' : process.platform === 'win32' ? 'hap.dll' : 'libhap.so';
const pkg = path.resolve(__dirname, '..');
const source = process.env.HAP_LIBRARY_PATH
  ? path.resolve(process.env.HAP_LIBRARY_PATH)
  : path.resolve(pkg, '..', '..', 'target', 'release', name);
if (!fs.existsSync(source)) {
  console.error(`bundle-lib: ${source} does not exist; run cargo build --release at the repository root`);
  // --optional (prepack): pack without a bundled copy; HAP_LIBRARY_PATH still works.
  process.exit(process.argv.includes('--optional') ? 0 : 1);
}
const dir = path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`);
fs.mkdirSync(dir, { recursive: true });
fs.copyFileSync(source, path.join(dir, name));
console.log(`bundle-lib: ${source} -> ${path.join(dir, name)}`);
