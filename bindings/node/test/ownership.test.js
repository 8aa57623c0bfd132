'use strict';
// ABI ownership rule, checked on the source: every char* libhap hands out is
// decoded and released in exactly one place (lib/ffi.js takeOwnedString),
// with hap_free, and libc free is never declared.

const { test } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const sources = ['index.js', 'index.mjs', 'lib/ffi.js', 'lib/errors.js'].map((f) => ({
  file: f,
  text: fs.readFileSync(path.join(root, f), 'utf8').replace(/\/\/.*$/gm, ''),
}));

function occurrences(pattern) {
  return sources.flatMap(({ file, text }) => [...text.matchAll(pattern)].map(() => file));
}

test('hap_free is called in one place, next to the only koffi.decode', () => {
  assert.deepEqual(occurrences(/\.hap_free\(/g), ['lib/ffi.js']);
  assert.deepEqual(occurrences(/\.decode\(/g), ['lib/ffi.js']);
  const ffi = sources.find((s) => s.file === 'lib/ffi.js').text;
  const helper = ffi.slice(ffi.indexOf('function takeOwnedString'), ffi.indexOf('\n}\n', ffi.indexOf('function takeOwnedString')));
  assert.match(helper, /\.decode\(ptr, 'char', -1\)/);
  assert.match(helper, /finally \{\s*fns\.hap_free\(ptr\);/);
});

test('libc free is never declared, and out-params are pointers, not koffi strings', () => {
  assert.deepEqual(occurrences(/['"][^'"]*\bvoid\s+free\s*\(/g), []);
  const ffi = sources.find((s) => s.file === 'lib/ffi.js').text;
  const outs = [...ffi.matchAll(/_Out_ ([\w *]+?)\w+[,)]/g)].map((m) => m[1].trim());
  assert.equal(outs.length, 8, 'two out-params each for open, resolve, report, status');
  for (const type of outs) assert.equal(type, 'void **');
  // A `char *` / `str` return type would make koffi copy and leak an owned string.
  assert.doesNotMatch(ffi, /lib\.func\('(str|char \*)/);
});
