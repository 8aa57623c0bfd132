#!/usr/bin/env node
'use strict';
// Median per-call cost of a hot resolve (valid token, no refresh, no lock)
// through koffi (hap-oauth) and through ffi-napi (@2060.io fork), side by side.
//
//   node bench/bench_resolve.js [--rounds 41] [--calls 2000] [--json]
//
// Rows:
//   resolveTokenSync      the whole call as a user makes it: request JSON, FFI,
//                         decode + hap_free, JSON.parse, result object
//   hap_resolve_token     FFI call + decode + hap_free only (no JSON parse)
//   hap_abi_version       a trivial call: the FFI's own floor
// Each round times `calls` back-to-back calls; the figure is the median over
// rounds of (round time / calls). koffi and ffi-napi rounds alternate, so
// drift on a shared machine hits both alike.

const path = require('node:path');
const fs = require('node:fs');
const hap = require('..');
const ffi = require('../lib/ffi.js');
const { startFakeServer, makeScene } = require('../test/helpers.js');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const ROUNDS = arg('rounds', 41);
const CALLS = arg('calls', 2000);
const AS_JSON = process.argv.includes('--json');

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function timeRound(fn) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) fn();
  return Number(process.hrtime.bigint() - t0) / CALLS; // ns per call
}

function compare(cases) {
  const samples = cases.map(() => []);
  for (const c of cases) for (let i = 0; i < Math.max(200, CALLS / 4); i++) c.fn(); // warm up (JIT, page cache)
  for (let r = 0; r < ROUNDS; r++) cases.forEach((c, i) => samples[i].push(timeRound(c.fn)));
  return samples.map(median);
}

function fmt(ns) {
  return ns >= 1000 ? `${(ns / 1000).toFixed(2)} µs` : `${ns.toFixed(0)} ns`;
}

async function main() {
  const compatDir = path.join(__dirname, '..', 'test', 'ffi-napi');
  if (!fs.existsSync(path.join(compatDir, 'node_modules', '@2060.io', 'ffi-napi'))) {
    throw new Error(`ffi-napi is not installed: run \`npm ci\` in ${compatDir}`);
  }
  const ffiNapi = require('../test/ffi-napi/hap_ffi_napi.js').open();

  const server = await startFakeServer();
  const scene = makeScene(server);
  const pool = new hap.Pool(scene.config);
  const rawHandle = ffi.openPool(JSON.stringify(scene.config)).handle;
  const napiPool = ffiNapi.openPool(scene.config);
  const { fns } = ffi.load();
  try {
    // Sanity: all three see the same valid token and nothing refreshes during the run.
    const a = pool.resolveTokenSync();
    const b = ffiNapi.resolve(napiPool);
    if (a.accessToken !== b.access_token || a.refreshed || b.refreshed) throw new Error('setup: tokens differ');

    const rows = [
      ['resolveTokenSync', () => pool.resolveTokenSync(), () => ffiNapi.resolve(napiPool)],
      [
        'hap_resolve_token',
        () => ffi.callSync('hap_resolve_token', [rawHandle, null]),
        () => ffiNapi.resolveJson(napiPool),
      ],
      ['hap_abi_version', () => fns.hap_abi_version(), () => ffiNapi.lib.hap_abi_version()],
    ];
    const results = rows.map(([name, viaKoffi, viaNapi]) => {
      const [k, n] = compare([{ fn: viaKoffi }, { fn: viaNapi }]);
      return { name, koffi_ns: k, ffi_napi_ns: n };
    });
    if ((await server.stats()).posts !== 0) throw new Error('a refresh happened during the benchmark');

    if (AS_JSON) {
      console.log(JSON.stringify({ rounds: ROUNDS, calls: CALLS, node: process.version, results }));
    } else {
      console.log(`hot resolve, median per call over ${ROUNDS} rounds x ${CALLS} calls (${hap.version()}, node ${process.version})`);
      console.log(`${'call'.padEnd(20)}${'koffi'.padStart(12)}${'ffi-napi'.padStart(12)}${'ratio'.padStart(9)}`);
      for (const r of results) {
        console.log(
          `${r.name.padEnd(20)}${fmt(r.koffi_ns).padStart(12)}${fmt(r.ffi_napi_ns).padStart(12)}${(r.ffi_napi_ns / r.koffi_ns).toFixed(1).padStart(8)}x`,
        );
      }
    }
  } finally {
    pool.close();
    ffi.freePool(rawHandle);
    ffiNapi.freePool(napiPool);
    scene.cleanup();
    await server.stop();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
