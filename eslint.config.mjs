import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Globals that laf's function sandbox does not provide (docs/laf.md).
// Deployed code must get them from Node core modules instead.
const lafMissingGlobals = [
  'TextDecoder', 'TextEncoder', 'AbortController', 'AbortSignal', 'ReadableStream', 'Headers',
  'URLSearchParams', 'structuredClone', 'queueMicrotask', 'performance', 'crypto',
].map((name) => ({ name, message: 'Not available in the laf sandbox; require it from a Node core module.' }));

// Signatures and digests are compared only with crypto.timingSafeEqual (lib/channels/wxbiz/signature.ts
// safeEqualHex): an ===, startsWith or includes on one would leak how many leading characters match.
const DIGEST = '/signature|digest|^expected$/i';
// A presence check (=== undefined / null) compares nothing secret.
const COMPARE = 'BinaryExpression[operator=/^[!=]==?$/]:not([right.type="Identifier"][right.name="undefined"]):not([right.type="Literal"][right.raw="null"])';
const constantTimeDigests = [
  ...['Identifier[name=' + DIGEST + ']', 'Literal[value=' + DIGEST + ']', 'MemberExpression > Identifier.property[name=' + DIGEST + ']'].flatMap((operand) => [
    { selector: `${COMPARE} > ${operand}`, message: 'Compare signatures and digests with safeEqualHex (crypto.timingSafeEqual), never with ===.' },
    { selector: `${COMPARE} > MemberExpression > ${operand}`, message: 'Compare signatures and digests with safeEqualHex (crypto.timingSafeEqual), never with ===.' },
  ]),
  { selector: `CallExpression[callee.property.name=/^(startsWith|endsWith|includes|indexOf|localeCompare)$/] > Identifier[name=${DIGEST}]`, message: 'Compare signatures and digests with safeEqualHex (crypto.timingSafeEqual).' },
];

export default tseslint.config(
  { ignores: ['node_modules', 'dist', 'data', 'coverage'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['lib/**/*.ts', 'functions/**/*.ts'],
    ignores: ['lib/sim/**'],
    rules: { 'no-restricted-globals': ['error', ...lafMissingGlobals], 'no-restricted-syntax': ['error', ...constantTimeDigests] },
  },
);
