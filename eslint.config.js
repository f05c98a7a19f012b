// @ts-check
import { posix } from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The direction of imports between the parts: a part (`root`) may import its own files and the repository paths
 * in `may` (a trailing `/` is a folder, anything else one file), nothing else of the project. api/ is the contract
 * everything reads and imports nothing; shared plumbing imports only the contract; a provider imports the
 * contract, the plumbing and the provider contract (types, errors, factory), never a controller or the webhooks;
 * controllers never import each other. Only operator/cli*.ts (which wires the parts together), test/, bench/ and
 * hack/ may import everything. Tests beside the code may also use the fake provider and test/support/.
 */
const PROVIDER_CONTRACT = [
  'operator/providers/types.ts',
  'operator/providers/errors.ts',
  'operator/providers/status-notifier.ts',
  'operator/providers/factory.ts',
];
/** The providers' static refusal rules: pure tables that admission and the ElasticWorkload controller read. */
const PROVIDER_RULES = ['operator/providers/rules.ts', 'operator/providers/refusal.ts'];
const LAYERS = [
  { root: 'api', may: [] },
  { root: 'operator/shared', may: ['api/'] },
  // The registries (index.ts, rules.ts) import every provider folder, which is inside their root.
  { root: 'operator/providers', may: ['api/', 'operator/shared/'] },
  ...['eci', 'local', 'fake'].map((name) => ({
    root: `operator/providers/${name}`,
    may: ['api/', 'operator/shared/', ...PROVIDER_CONTRACT],
  })),
  { root: 'webhooks', may: ['api/', 'operator/shared/', ...PROVIDER_RULES] },
  { root: 'operator/nodeidentity', may: ['api/', 'operator/shared/'] },
  {
    root: 'operator/virtualnode',
    may: [
      'api/',
      'operator/shared/',
      'operator/nodeidentity/',
      'operator/providers/types.ts',
      'operator/providers/errors.ts',
    ],
  },
  {
    root: 'operator/elasticworkload',
    may: ['api/', 'operator/shared/', ...PROVIDER_RULES],
  },
];
const TEST_FILES = ['**/*.test.ts', '**/*.fixtures.ts'];
const TESTS_MAY = ['test/support/', 'operator/providers/fake/'];

const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * `no-restricted-imports` blocks for one part: one per folder depth, since a relative specifier leaves the part
 * after as many `../` as the file is deep, and the allowed paths are then spelled from the part's parent folder.
 */
function directionBlocks({ root, may }) {
  const parent = posix.dirname(root);
  const inside = LAYERS.filter((l) => l.root.startsWith(`${root}/`)).map((l) => `${l.root}/**`);
  const allowed = (paths) =>
    paths
      .map((p) => {
        const rel = posix.relative(parent, p.replace(/\/$/, ''));
        return p.endsWith('/') ? `${escape(rel)}/` : `${escape(rel)}$`;
      })
      .join('|');
  const what = may.length > 0 ? `only its own files and ${may.join(', ')}` : 'nothing of the project';
  return [0, 1, 2].flatMap((depth) => {
    const files = [`${root}/${'*/'.repeat(depth)}*.ts`];
    const rule = (paths, extra) => [
      'error',
      {
        patterns: [
          {
            regex: `^(\\.\\./){${depth + 1}}${paths.length > 0 ? `(?!${allowed(paths)})` : ''}`,
            message: `${root}/ imports ${what}${extra} (the direction of imports: docs/architecture.md).`,
          },
        ],
      },
    ];
    return [
      {
        files,
        ignores: [...inside, ...TEST_FILES],
        rules: { 'no-restricted-imports': rule(may, '') },
      },
      {
        files: TEST_FILES.map((t) => `${root}/${'*/'.repeat(depth)}${t.slice(3)}`),
        ignores: inside,
        rules: {
          'no-restricted-imports': rule(
            [...may, ...TESTS_MAY],
            '; its tests also test/support/ and the fake provider',
          ),
        },
      },
    ];
  });
}

export default tseslint.config(
  {
    ignores: ['node_modules/', 'bin/', '.tools/', '.cluster/', 'hack/tools/', 'bench/results/', 'charts/'],
  },
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
  ...LAYERS.flatMap(directionBlocks),
);
