#!/usr/bin/env node
'use strict';
// prepack of hap-oauth itself. The package is JavaScript only: libhap comes in one package per
// platform (npm/<platform>/, e.g. @hap-oauth/linux-x64-gnu) that npm picks from the
// optionalDependencies by os/cpu/libc, as esbuild and swc ship theirs. scripts/dist writes those
// optionalDependencies into the copy it packs (they name packages that exist only once
// released, so the checkout's package.json cannot carry them: `npm ci` would fail here). A
// tarball packed straight from the checkout would name none and could never load a library:
// refuse it.

const fs = require('node:fs');
const path = require('node:path');

const pkg = JSON.parse(fs.readFileSync(path.join(process.cwd(), 'package.json'), 'utf8'));
const platforms = Object.keys(pkg.optionalDependencies || {}).filter((n) => n.startsWith('@hap-oauth/'));
if (platforms.length === 0) {
  console.error(
    'hap-oauth prepack: this package.json names no @hap-oauth/<platform> package under ' +
      'optionalDependencies, so the tarball would carry no way to get libhap. Pack the release ' +
      'with scripts/dist at the repository root (it writes dist/node/hap-oauth-X.tgz and one ' +
      'hap-oauth-<platform>-X.tgz per built platform); for development use ' +
      '`npm install ./bindings/node` after `cargo build --release`.',
  );
  process.exit(1);
}
for (const name of platforms) {
  if (pkg.optionalDependencies[name] !== pkg.version) {
    console.error(`hap-oauth prepack: ${name} is pinned to ${pkg.optionalDependencies[name]}, not ${pkg.version}`);
    process.exit(1);
  }
}
console.error(`hap-oauth prepack: libhap comes from ${platforms.join(', ')}`);
