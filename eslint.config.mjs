import js from '@eslint/js';
import tseslint from 'typescript-eslint';

// Globals that laf's function sandbox does not provide (shared/docs/laf-platform.md §6).
// Deployed code must get them from Node core modules instead.
const lafMissingGlobals = [
  'TextDecoder', 'TextEncoder', 'AbortController', 'AbortSignal', 'ReadableStream', 'Headers',
  'URLSearchParams', 'structuredClone', 'queueMicrotask', 'performance', 'crypto',
].map((name) => ({ name, message: 'Not available in the laf sandbox; require it from a Node core module.' }));

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
    rules: { 'no-restricted-globals': ['error', ...lafMissingGlobals] },
  },
);
