/**
 * Replay protection: a verified token's jti is remembered in Valkey until the
 * token expires, written by the same script call that publishes its event
 * (web/publisher.ts). The same token with the same body gets the first answer
 * again without a second publish (safe client retries); the same token with
 * another body is denied; a record without an answer (an older replica still
 * handling the first use) is waited for briefly, then ERR_REPLAY_IN_PROGRESS.
 * Keys hold a hash of issuer + jti and of the body, never the token or its
 * claims in clear. Stored values are read back as untrusted: a value that is
 * not our record is reported by position, never quoted.
 */

import { createHash } from "node:crypto";
import { sleep } from "../lib/backoff.ts";
import { AuthError, Reason } from "./reasons.ts";
import { AppError } from "../shared/errors.ts";
import { jsonErrorPosition } from "../lib/error_text.ts";
import { productKey } from "../shared/valkey_keys.ts";

/** A token use to claim: where it is remembered and what it was used with. */
export interface ReplayClaim {
  key: string;
  bodyHash: string;
  ttlMs: number;
}

/**
 * One try at the first use, made by the caller in a single Valkey call: either
 * the claim was free (and is now taken, with the answer stored, or left free
 * when nothing was delivered), or a record already stood under the key.
 */
export type ReplayAttempt<T> = { kind: "done"; value: T } | { kind: "taken"; record: string };

/** Outcome of ReplayGuard.once. */
export type ReplayOutcome<T> =
  | { kind: "first"; value: T }
  | { kind: "repeat"; status: number; body: string };

/** Remembers which token was used for which body. */
export interface ReplayGuard {
  /** Where this use is remembered, for how long, and a hash of its body. No I/O. */
  claim(token: TokenUse): ReplayClaim;
  /**
   * Runs `attempt` until the claim was free (its value is returned) or a
   * finished record answers: the stored answer for the same body, a denial for
   * another body, ERR_REPLAY_IN_PROGRESS when a record stays unfinished.
   */
  once<T>(claim: ReplayClaim, attempt: () => Promise<ReplayAttempt<T>>): Promise<ReplayOutcome<T>>;
}

/** One verified token used with one body. */
export interface TokenUse {
  issuer: string;
  jti: string;
  /** Token expiry, seconds since the epoch (a NumericDate: may have a fraction). */
  exp: number;
  /** Token issue time, seconds since the epoch (may have a fraction). */
  iat: number;
  body: string;
}

/** Options for createReplayGuard. */
export interface ReplayGuardOptions {
  clockToleranceMs: number;
  /** The verifier's bound on token age: no token passes it after iat + this. */
  maxTokenAgeMs: number;
  now?: () => number;
  /** How long a repeat waits for the first use to finish. */
  waitMs?: number;
}

const PREFIX = productKey("jti", "");

// node:crypto hashes synchronously; crypto.subtle.digest goes through Deno's
// blocking thread pool, which cost more than the hashing itself (bench profile).
function sha256(text: string): string {
  return createHash("sha256").update(text).digest("hex");
}

interface Stored {
  h: string;
  s?: number;
  b?: string;
}

const MIN_TTL_MS = 1000;

/**
 * How long to remember a token: until it can no longer pass verification,
 * which is the earlier of exp and iat + the maximum age, plus the clock
 * tolerance. Valkey's PX takes a whole number of milliseconds, and NumericDates
 * may have fractions (RFC 7519 §2), so the result is rounded up, and bounded so
 * a far-future exp can never reach Valkey as a huge or non-finite number.
 */
export function replayTtlMs(
  token: { exp: number; iat: number },
  options: { clockToleranceMs: number; maxTokenAgeMs: number; nowMs: number },
): number {
  const longest = options.maxTokenAgeMs + 2 * options.clockToleranceMs;
  const untilMs = Math.min(token.exp * 1000, token.iat * 1000 + options.maxTokenAgeMs) +
    options.clockToleranceMs;
  const ttl = Math.ceil(untilMs - options.nowMs);
  // NaN (a missing claim) fails every comparison: remember for the longest time.
  if (!(ttl <= longest)) return Math.ceil(Math.max(MIN_TTL_MS, longest));
  return Math.max(MIN_TTL_MS, ttl);
}

/** Reads a stored value; throws ERR_PUBLISH_FAILED, without its content, when it is not our record. */
function readStored(raw: string): Stored {
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    // Security: JSON.parse's message quotes the text; say where, not what.
    throw new AppError(
      "ERR_PUBLISH_FAILED",
      `replay record is not valid JSON${jsonErrorPosition(err)}`,
    );
  }
  const v = value as Partial<Stored> | null;
  const shaped = v !== null && typeof v === "object" && !Array.isArray(v) &&
    typeof v.h === "string" &&
    (v.s === undefined ||
      (Number.isInteger(v.s) && (v.s as number) >= 200 && (v.s as number) <= 599)) &&
    (v.b === undefined || typeof v.b === "string");
  if (!shaped) throw new AppError("ERR_PUBLISH_FAILED", "replay record has an unexpected shape");
  return v as Stored;
}

/**
 * Creates the guard. Claiming, publishing and storing the answer happen in the
 * caller's one script call (web/publisher.ts); the guard decides what a record
 * found under the key means. A record without an answer is another request
 * still in flight (another replica, or a version that stored the answer
 * separately): it is polled until it finishes or disappears.
 */
export function createReplayGuard(options: ReplayGuardOptions): ReplayGuard {
  const now = options.now ?? Date.now;
  const waitMs = options.waitMs ?? 3000;

  return {
    claim(t) {
      return {
        key: PREFIX + sha256(`${t.issuer}\n${t.jti}`),
        bodyHash: sha256(t.body),
        ttlMs: replayTtlMs(t, {
          clockToleranceMs: options.clockToleranceMs,
          maxTokenAgeMs: options.maxTokenAgeMs,
          nowMs: now(),
        }),
      };
    },
    async once(claim, attempt) {
      const deadline = now() + waitMs;
      for (;;) {
        const tried = await attempt();
        if (tried.kind === "done") return { kind: "first", value: tried.value };
        const stored = readStored(tried.record);
        if (stored.h !== claim.bodyHash) {
          throw new AuthError(
            Reason.replay_different_body,
            "token already used with a different body",
          );
        }
        if (stored.s !== undefined && stored.b !== undefined) {
          return { kind: "repeat", status: stored.s, body: stored.b };
        }
        if (now() > deadline) {
          throw new AppError(
            "ERR_REPLAY_IN_PROGRESS",
            `the first request with this token was still in progress after ${waitMs} ms`,
          );
        }
        await sleep(25);
      }
    },
  };
}
