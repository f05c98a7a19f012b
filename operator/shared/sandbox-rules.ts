// TEMPORARY: moved to api/sandbox-rules.ts; removed when the import codemod runs.
export * from '../../api/sandbox-rules.ts';
