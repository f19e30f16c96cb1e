/** Key pairs for tests: tools/signing_keys.ts makes them; here, the env that hands them out. */

import type { TestKeyPair } from "../../tools/signing_keys.ts";

export { generateKeyPair, type TestKeyPair } from "../../tools/signing_keys.ts";

/** The env of a web and a worker that share `pair` (web signs, the worker verifies). */
export function signingEnv(
  pair: TestKeyPair,
): { web: Record<string, string>; worker: Record<string, string> } {
  return {
    web: { EVENT_SIGNING_KEY: pair.privatePem },
    worker: { EVENT_VERIFY_KEYS: pair.publicPem },
  };
}
