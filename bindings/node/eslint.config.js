'use strict';
// Light on purpose: eslint's recommended rules, Node globals, nothing stylistic.
const js = require('@eslint/js');

const nodeGlobals = Object.fromEntries(
  [
    'require', 'module', 'exports', '__dirname', '__filename', 'process', 'Buffer', 'console',
    'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'fetch',
    'structuredClone', 'FinalizationRegistry', 'URL',
  ].map((name) => [name, 'readonly']),
);

module.exports = [
  { ignores: ['node_modules/**', 'test/ffi-napi/node_modules/**', 'test/types/**'] },
  js.configs.recommended,
  {
    files: ['**/*.js'],
    languageOptions: { ecmaVersion: 2023, sourceType: 'commonjs', globals: nodeGlobals },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { ecmaVersion: 2023, sourceType: 'module', globals: nodeGlobals },
  },
];
