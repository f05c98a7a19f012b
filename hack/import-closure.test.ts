import { describe, expect, it } from 'vitest';
import { importClosure, runtimeImports } from './import-closure.ts';

describe('runtimeImports', () => {
  it.each([
    ["import { a } from './a.ts';", ['./a.ts']],
    ["import x, { type T } from './b.ts';", ['./b.ts']], // becomes `import x from`: still loaded
    ["import { type T } from './c.ts';", ['./c.ts']], // becomes `import {} from`: still loaded
    ["import type { T } from './types.ts';", []], // erased
    ["export type { T } from './types.ts';", []],
    ["export { a } from './a.ts';\nexport * from './all.ts';", ['./a.ts', './all.ts']],
    ["import 'reflect-metadata';", ['reflect-metadata']],
    ["const { P } = await import('./local/provider.ts');", ['./local/provider.ts']],
    ["let o: import('node:https').RequestOptions;", []], // a type, not a call
    ["import {\n  a,\n  b,\n} from '@kubernetes/client-node';", ['@kubernetes/client-node']],
    [
      "/** e.g. import { x } from './example.ts' */\n// import y from './y.ts'\nconst s = \"import z from './z.ts'\";",
      [],
    ],
  ])('%s', (source, expected) => {
    expect(runtimeImports(source)).toEqual(expected);
  });
});

describe('importClosure', () => {
  const files: Record<string, string> = {
    'operator/cli.ts': [
      "import { a } from './shared/a.ts';",
      "import type { Only } from './shared/types-only.ts';",
      "import { hostname } from 'node:os';",
      "import { stringify } from 'yaml';",
      "const load = () => import('./providers/eci.ts');",
      "import { serve } from '../webhooks/run.ts';",
    ].join('\n'),
    'operator/shared/a.ts': "import { b } from './b.ts'; import { z } from 'zod/v4';",
    'operator/shared/b.ts':
      "import { a } from './a.ts'; import * as k8s from '@kubernetes/client-node/dist/x.js';",
    'operator/providers/eci.ts': "import Eci from '@alicloud/eci20180808';",
    'webhooks/run.ts': "import { b } from '../operator/shared/b.ts';",
  };
  const read = (p: string) => files[p];

  it('follows static and dynamic relative imports, cycles included, and names the packages', () => {
    expect(importClosure('operator/cli.ts', read)).toEqual({
      files: [
        'operator/cli.ts',
        'operator/providers/eci.ts',
        'operator/shared/a.ts',
        'operator/shared/b.ts',
        'webhooks/run.ts',
      ],
      packages: ['@alicloud/eci20180808', '@kubernetes/client-node', 'yaml', 'zod'],
    });
  });

  it('fails on an import of a file that does not exist', () => {
    expect(() => importClosure('a.ts', (p) => (p === 'a.ts' ? "import './gone.ts';" : undefined))).toThrow(
      'gone.ts: imported but missing',
    );
  });

  it('fails on an import out of the repository', () => {
    expect(() => importClosure('a.ts', () => "import '../outside.ts';")).toThrow(/leaves the repository/);
  });
});
