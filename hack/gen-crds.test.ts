import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generatedCrdFiles, ROOT } from './gen-crds.ts';

describe('committed CRDs', () => {
  it.each(generatedCrdFiles().map((f) => [f.path, f.content]))(
    '%s matches the zod schema (run `node hack/gen-crds.ts` after changing it)',
    (path, content) => {
      const file = join(ROOT, path);
      expect(existsSync(file), `${path} is missing: run node hack/gen-crds.ts`).toBe(true);
      expect(readFileSync(file, 'utf8')).toBe(content);
    },
  );
});
