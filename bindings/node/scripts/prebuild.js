#!/usr/bin/env node
'use strict';
// prepack / postpack (--clean) of a per-platform package, npm/<platform>/: put the library in
// it, or refuse to pack. npm runs this in the package's folder. The library comes from
// HAP_LIBRARY_PATH, else the repository's dist/c/lib (scripts/dist), and must be an ELF shared
// object for the package's cpu: packing nothing, or an x86-64 library into the arm64 package,
// would publish a broken install.

const fs = require('node:fs');
const path = require('node:path');

const dir = process.cwd();
const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
const library = pkg.files.find((f) => /^libhap\.(so|dylib)$/.test(f));
const dest = path.join(dir, library);

if (process.argv.includes('--clean')) {
  fs.rmSync(dest, { force: true });
  process.exit(0);
}

function refuse(why) {
  console.error(
    `${pkg.name} prepack: ${why}. Build and pack the release with scripts/dist at the ` +
      'repository root, or set HAP_LIBRARY_PATH to a libhap built for ' +
      `${pkg.os[0]}/${pkg.cpu[0]}${pkg.libc ? `/${pkg.libc[0]}` : ''}.`,
  );
  process.exit(1);
}

const ELF_MACHINE = { x64: 62, arm64: 183 };
const source = process.env.HAP_LIBRARY_PATH
  ? path.resolve(process.env.HAP_LIBRARY_PATH)
  : path.resolve(dir, '..', '..', '..', '..', 'dist', 'c', 'lib', library);
if (!fs.existsSync(source)) refuse(`no library to pack: ${source} does not exist`);

const head = Buffer.alloc(20);
const fd = fs.openSync(source, 'r');
fs.readSync(fd, head, 0, head.length, 0);
fs.closeSync(fd);
if (pkg.os[0] === 'linux') {
  const isElf = head.readUInt32BE(0) === 0x7f454c46;
  // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian, e_type 3 = ET_DYN (a shared object).
  if (!isElf || head[4] !== 2 || head[5] !== 1 || head.readUInt16LE(16) !== 3) {
    refuse(`${source} is not a 64-bit little-endian ELF shared library`);
  }
  const machine = head.readUInt16LE(18);
  if (machine !== ELF_MACHINE[pkg.cpu[0]]) {
    refuse(`${source} is built for ELF machine ${machine}, not ${pkg.cpu[0]} (${ELF_MACHINE[pkg.cpu[0]]})`);
  }
}
fs.copyFileSync(source, dest);
console.error(`${pkg.name} prepack: ${source} -> ${library}`);
