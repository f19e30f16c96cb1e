/**
 * Assertions for the suite (JSR's @std/assert is not reachable from our
 * machines). Deep equality is node:assert/strict's deepStrictEqual, so Maps,
 * Sets, Errors, NaN and undefined members compare as values, not as JSON.
 * Failures say what was expected and what was seen.
 */

import { AssertionError, deepStrictEqual, notDeepStrictEqual } from "node:assert/strict";

/** Throws unless `condition` is truthy. */
export function assert(condition: unknown, message = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError({ message });
}

/** Deep strict equality (key order ignored, array order, types and prototypes kept). */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  deepStrictEqual(actual, expected, message);
}

/** Throws when the two values are deeply and strictly equal. */
export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  notDeepStrictEqual(actual, expected, message);
}

/** Throws unless `text` matches `re`. */
export function assertMatch(text: string, re: RegExp, message?: string): void {
  if (typeof text !== "string" || !re.test(text)) {
    throw new AssertionError({
      message: `${message ? message + ": " : ""}expected ${
        JSON.stringify(String(text).slice(0, 500))
      } to match ${re}`,
    });
  }
}

/** What a thrown error must carry: its class and, optionally, its code and reason. */
export interface ErrorExpectation {
  // deno-lint-ignore no-explicit-any
  instanceOf?: abstract new (...args: any[]) => Error;
  code?: string;
  reason?: string;
  message?: RegExp;
}

function checkError(err: unknown, expected: ErrorExpectation | undefined): Error {
  if (!(err instanceof Error)) {
    throw new AssertionError({ message: `expected an Error to be thrown, got ${String(err)}` });
  }
  if (!expected) return err;
  const seen = err as Error & { code?: string; reason?: string };
  const describe = () =>
    `${err.name} code=${seen.code} reason=${seen.reason} message=${
      JSON.stringify(err.message.slice(0, 300))
    }`;
  if (expected.instanceOf && !(err instanceof expected.instanceOf)) {
    throw new AssertionError({
      message: `expected a ${expected.instanceOf.name}, got ${describe()}`,
    });
  }
  if (expected.code !== undefined && seen.code !== expected.code) {
    throw new AssertionError({ message: `expected code ${expected.code}, got ${describe()}` });
  }
  if (expected.reason !== undefined && seen.reason !== expected.reason) {
    throw new AssertionError({
      message: `expected reason ${expected.reason}, got ${describe()}`,
    });
  }
  if (expected.message && !expected.message.test(err.message)) {
    throw new AssertionError({
      message: `expected a message matching ${expected.message}, got ${describe()}`,
    });
  }
  return err;
}

/**
 * Runs `fn` and returns the error it throws; fails when it does not throw, or
 * when the error does not meet `expected`.
 */
export async function assertRejects(
  fn: () => unknown,
  expected?: ErrorExpectation,
): Promise<Error> {
  let threw = false;
  let error: unknown;
  try {
    await fn();
  } catch (err) {
    threw = true;
    error = err;
  }
  if (!threw) throw new AssertionError({ message: "expected the call to throw" });
  return checkError(error, expected);
}

/** Synchronous variant of assertRejects. */
export function assertThrows(fn: () => unknown, expected?: ErrorExpectation): Error {
  let threw = false;
  let error: unknown;
  try {
    fn();
  } catch (err) {
    threw = true;
    error = err;
  }
  if (!threw) throw new AssertionError({ message: "expected the call to throw" });
  return checkError(error, expected);
}
