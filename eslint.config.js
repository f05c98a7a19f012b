// @ts-check
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'bin/', '.tools/', '.cluster/', 'hack/tools/', 'bench/results/', 'charts/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': ['error', { allow: ['error'] }],
    },
  },
  {
    // Scripts, benchmarks and test support print to the terminal on purpose.
    files: ['hack/**', 'bench/**', 'test/support/**', 'operator/cli.ts'],
    rules: { 'no-console': 'off' },
  },
);
