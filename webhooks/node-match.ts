// TEMPORARY: moved to api/node-match.ts; removed when the import codemod runs.
export * from '../api/node-match.ts';
