/**
 * A map over a list with at most `limit` calls in flight, in the shape of
 * std's `pooledMap`, but collecting results in input order: callers fold them
 * once all are done.
 */

/**
 * Calls `fn` on every item, at most `limit` at a time, and resolves with the
 * results in the order of `items`. A rejection rejects the whole map once the
 * calls in flight have settled; callers that must not fail catch inside `fn`.
 */
export async function pooledMap<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new RangeError(`pooledMap limit must be a whole number >= 1, got ${limit}`);
  }
  const results: R[] = new Array(items.length);
  let next = 0;
  const runners = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  });
  const settled = await Promise.allSettled(runners);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  return results;
}
