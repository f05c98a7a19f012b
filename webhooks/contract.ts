// TEMPORARY: moved to api/labels.ts and api/taints.ts; removed when the import codemod runs.
export * from '../api/labels.ts';
export * from '../api/taints.ts';
