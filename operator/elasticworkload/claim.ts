/**
 * One source, one owner: a second ElasticWorkload on the same Deployment would fight the first over its replicas
 * for ever. The oldest claim wins; the others say so (SourceClaimed) and touch nothing.
 */
import type { ElasticWorkload } from '../../api/elasticworkload.ts';

/** The ElasticWorkload among `others` (same namespace) that claimed `ew`'s source first, if any. */
export function claimRival(
  ew: ElasticWorkload,
  others: readonly ElasticWorkload[],
): ElasticWorkload | undefined {
  return others.find(
    (o) =>
      o.metadata.uid !== ew.metadata.uid &&
      o.spec.sourceTarget.name === ew.spec.sourceTarget.name &&
      olderThan(o, ew),
  );
}

/** Whether `a` claimed its source before `b` (creation time, then name, so that exactly one wins a tie). */
export function olderThan(a: ElasticWorkload, b: ElasticWorkload): boolean {
  const at = (e: ElasticWorkload) => new Date(String(e.metadata.creationTimestamp ?? 0)).getTime();
  return at(a) < at(b) || (at(a) === at(b) && a.metadata.name < b.metadata.name);
}
