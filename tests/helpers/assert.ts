/**
 * Minimal assertions (JSR's @std/assert is not reachable from our machines).
 * Failures say what was expected and what was seen.
 */

/** Throws unless `condition` is truthy. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new Error(message);
}

function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      return Object.fromEntries(
        Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]),
      );
    }
    return v === undefined ? "__undefined__" : v;
  });
}

/** Deep equality by canonical JSON (key order ignored, array order kept). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  const a = canonical(actual);
  const e = canonical(expected);
  if (a !== e) {
    throw new Error(
      `${message ? message + ": " : ""}expected ${e.slice(0, 2000)}, got ${a.slice(0, 2000)}`,
    );
  }
}

/** Throws when the two values are deeply equal. */
export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  if (canonical(actual) === canonical(expected)) {
    throw new Error(
      `${message ? message + ": " : ""}expected a value other than ${
        canonical(expected).slice(0, 500)
      }`,
    );
  }
}

/** Throws unless `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, message?: string): void {
  if (!re.test(text)) {
    throw new Error(
      `${message ? message + ": " : ""}expected ${
        JSON.stringify(text.slice(0, 500))
      } to match ${re}`,
    );
  }
}

/** Runs `fn` and returns the error it throws; fails when it does not throw. */
export async function assertRejects(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected the call to throw");
}

/** Synchronous variant of assertRejects. */
export function assertThrows(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected the call to throw");
}
