/**
 * Which source files the operator loads at runtime: the relative imports reachable from operator/cli.ts,
 * static and dynamic (`await import('./x.ts')`), without `import type` (erased by Node's type stripping).
 * hack/build-image.ts ships exactly these, so tests, fixtures and test-only helpers stay out of the image,
 * and checks that every package they import is a production dependency.
 */
import { dirname, join, normalize } from 'node:path';
import ts from 'typescript';

/** The import specifiers of a TypeScript module that survive type stripping, in source order. */
export function runtimeImports(source: string, fileName = 'module.ts'): string[] {
  const file = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const out = new Set<string>();
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node)) {
      // `import type` goes; `import { type A } from` stays as `import {} from`, which still loads the module.
      if (!node.importClause?.isTypeOnly && ts.isStringLiteral(node.moduleSpecifier))
        out.add(node.moduleSpecifier.text);
    } else if (ts.isExportDeclaration(node)) {
      if (!node.isTypeOnly && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier))
        out.add(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      node.expression.kind === ts.SyntaxKind.ImportKeyword &&
      node.arguments[0] &&
      ts.isStringLiteralLike(node.arguments[0])
    ) {
      out.add(node.arguments[0].text);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return [...out];
}

/** The result of following relative imports from one entry point. */
export interface ImportClosure {
  /** Repository-relative paths of every module loaded, the entry included, sorted. */
  files: string[];
  /** Bare package names imported (`@scope/name` or `name`), `node:` built-ins excluded, sorted. */
  packages: string[];
}

/**
 * Follows relative imports from `entry` (a repository-relative path). `read` returns a file's source or
 * undefined when it does not exist; a missing import is an error, since the operator would fail to start.
 */
export function importClosure(entry: string, read: (path: string) => string | undefined): ImportClosure {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [normalize(entry)];
  while (queue.length > 0) {
    const file = queue.shift()!;
    if (files.has(file)) continue;
    const source = read(file);
    if (source === undefined) throw new Error(`${file}: imported but missing`);
    files.add(file);
    for (const spec of runtimeImports(source, file)) {
      if (spec.startsWith('node:')) continue;
      if (spec.startsWith('./') || spec.startsWith('../')) {
        const target = normalize(join(dirname(file), spec));
        if (target.startsWith('..')) throw new Error(`${file}: import ${spec} leaves the repository`);
        queue.push(target);
      } else if (!spec.startsWith('/')) {
        const parts = spec.split('/');
        packages.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!);
      }
    }
  }
  return { files: [...files].sort(), packages: [...packages].sort() };
}
