/**
 * Remembers which exact inputs passed a signature check, so a record read
 * again and again (every `GET /event/<id>?wait=` slice, every waiter woken)
 * is verified once. Keyed by a SHA-256 of every part the check covered, so any
 * change to any of them is checked again; only passes are remembered (a
 * failure costs its check each time, and cannot fill the memo), and the
 * oldest are forgotten past `max`.
 */

import { createHash } from "node:crypto";

const encoder = new TextEncoder();

/** The memo. */
export interface VerifiedMemo {
  /** True when `parts` passed `check` before, else runs it (and remembers a pass). */
  verified(parts: readonly string[], check: () => Promise<boolean>): Promise<boolean>;
  size(): number;
}

/** Creates a memo of at most `max` passes. */
export function createVerifiedMemo(max: number): VerifiedMemo {
  const passed = new Set<string>();
  return {
    async verified(parts, check) {
      // Each part's byte length first, so parts cannot shift across their boundaries.
      const hash = createHash("sha256");
      for (const part of parts) {
        const bytes = encoder.encode(part);
        hash.update(`${bytes.length}:`).update(bytes);
      }
      const key = hash.digest("base64");
      if (passed.has(key)) return true;
      const ok = await check();
      if (ok) {
        if (passed.size >= max) passed.delete(passed.values().next().value!);
        passed.add(key);
      }
      return ok;
    },
    size: () => passed.size,
  };
}
