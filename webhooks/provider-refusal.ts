// TEMPORARY: moved to operator/providers/refusal.ts; removed when the import codemod runs.
export * from '../operator/providers/refusal.ts';
