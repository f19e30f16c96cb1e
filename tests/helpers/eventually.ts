/** The suite's one polling helper: tests never assert on timing, they wait with a generous bound. */

/**
 * Polls `check` every `intervalMs` until it returns a value other than
 * undefined or false, or fails after `timeoutMs` with the last error `check`
 * threw. False counts as "not yet" so a boolean check cannot pass at once.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<Exclude<T, false>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value as Exclude<T, false>;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(
    `timed out after ${timeoutMs} ms waiting for ${what}${
      last ? `: ${(last as Error).message}` : ""
    }`,
  );
}
