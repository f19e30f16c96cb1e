/** The suite's one polling helper: tests never assert on timing, they wait with a generous bound. */

/**
 * Polls `check` every `intervalMs` until it returns a value other than
 * undefined, or fails after `timeoutMs` with the last error `check` threw.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
  intervalMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
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
