/**
 * Replay protection: a verified token's jti is remembered in Valkey until the
 * token expires. The same token with the same body gets the first answer again
 * without a second publish (safe client retries); the same token with another
 * body is denied. Keys hold a hash of issuer + jti and of the body, never the
 * token or its claims in clear.
 */

import { createHash } from "node:crypto";
import type { Valkey } from "iovalkey";
import { sleep } from "../shared/backoff.ts";
import { AppError, AuthError, describeError } from "../shared/errors.ts";

/** A claimed token use: where it is remembered and what it was used with. */
export interface ReplayClaim {
  key: string;
  bodyHash: string;
  ttlMs: number;
}

/** Outcome of ReplayGuard.begin. */
export type ReplayStart =
  | { kind: "first"; claim: ReplayClaim }
  | { kind: "repeat"; status: number; body: string };

/** Remembers which token was used for which body. */
export interface ReplayGuard {
  /** Claims the token for this body, or returns the answer the first use got. */
  begin(token: TokenUse): Promise<ReplayStart>;
  /** Stores the answer for repeats of this token and body. */
  complete(claim: ReplayClaim, status: number, body: string): Promise<void>;
  /** Forgets a claim whose request delivered nothing, so a retry may try again. */
  abandon(claim: ReplayClaim): Promise<void>;
}

/** One verified token used with one body. */
export interface TokenUse {
  issuer: string;
  jti: string;
  /** Token expiry, seconds since the epoch. */
  exp: number;
  body: string;
}

/** Options for createReplayGuard. */
export interface ReplayGuardOptions {
  client: Valkey;
  clockToleranceMs: number;
  now?: () => number;
  /** How long a repeat waits for the first use to finish. */
  waitMs?: number;
}

const PREFIX = "kuberollouttrigger:jti:";

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

/** Creates the guard on web's Valkey connection. */
export function createReplayGuard(options: ReplayGuardOptions): ReplayGuard {
  const now = options.now ?? Date.now;
  const waitMs = options.waitMs ?? 3000;
  const unavailable = (err: unknown) =>
    new AppError("ERR_PUBLISH_FAILED", `replay check failed: ${describeError(err)}`, {
      cause: err,
    });

  return {
    async begin(t) {
      const claim: ReplayClaim = {
        key: PREFIX + sha256(`${t.issuer}\n${t.jti}`),
        bodyHash: sha256(t.body),
        // Remembered until the token can no longer pass verification anyway.
        ttlMs: Math.max(1000, t.exp * 1000 + options.clockToleranceMs - now()),
      };
      const k = claim.key;
      const h = claim.bodyHash;
      try {
        const first = await options.client.set(k, JSON.stringify({ h }), "PX", claim.ttlMs, "NX");
        if (first !== null) return { kind: "first", claim };
        const deadline = now() + waitMs;
        for (;;) {
          const raw = await options.client.get(k);
          if (raw === null) {
            // The first use was abandoned (nothing delivered): this one may go.
            const again = await options.client.set(
              k,
              JSON.stringify({ h }),
              "PX",
              claim.ttlMs,
              "NX",
            );
            if (again !== null) return { kind: "first", claim };
            continue;
          }
          const stored = JSON.parse(raw) as Stored;
          if (stored.h !== h) {
            throw new AuthError(
              "replay_different_body",
              "token already used with a different body",
            );
          }
          if (stored.s !== undefined && stored.b !== undefined) {
            return { kind: "repeat", status: stored.s, body: stored.b };
          }
          if (now() > deadline) {
            throw new AppError(
              "ERR_PUBLISH_FAILED",
              "the first request with this token is still in progress",
            );
          }
          await sleep(25);
        }
      } catch (err) {
        if (err instanceof AppError) throw err;
        throw unavailable(err);
      }
    },
    async complete(claim, status, body) {
      const value: Stored = { h: claim.bodyHash, s: status, b: body };
      try {
        await options.client.set(claim.key, JSON.stringify(value), "PX", claim.ttlMs, "XX");
      } catch {
        // The event is published; a retry would then wait and fail, which is safe.
      }
    },
    async abandon(claim) {
      await options.client.del(claim.key).catch(() => 0);
    },
  };
}
