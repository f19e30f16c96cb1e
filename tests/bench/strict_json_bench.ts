/**
 * What parseStrictJson costs per call beside JSON.parse, on the three
 * documents web reads for every event: a GitHub claims set, a token header
 * and an event body. In process, bounded in count; asserts nothing.
 *
 *   deno run tests/bench/strict_json_bench.ts [iterations]
 */

import { parseStrictJson } from "../../lib/strict_json.ts";
import { githubClaims } from "../helpers/issuer.ts";

const iterations = Number(Deno.args[0] ?? 200_000);
if (!Number.isInteger(iterations) || iterations < 1000) {
  throw new Error(`iterations must be an integer of at least 1000, not ${Deno.args[0]}`);
}

const DOCUMENTS: Record<string, string> = {
  claims: JSON.stringify({
    ...githubClaims("https://token.actions.githubusercontent.com", 1_764_600_000),
    jti: "0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10",
  }),
  header: JSON.stringify({
    alg: "RS256",
    kid: "1F2AB83404C08EC9EA0BB99DAED02186B091DBF4",
    typ: "JWT",
    x5t: "Hyq4NATAjsnqC7mdrtAhhrCR2_Q",
  }),
  body: '{"image":"ghcr.io/acme/app:dev","tags":["dev"]}',
};

/** Nanoseconds per call, the best of five rounds (the others are warm-up and noise). */
function perCall(parse: (text: string) => unknown, text: string): number {
  let best = Infinity;
  let sink = 0;
  for (let round = 0; round < 5; round++) {
    const start = performance.now();
    for (let i = 0; i < iterations; i++) sink += parse(text) === null ? 1 : 0;
    best = Math.min(best, (performance.now() - start) * 1e6 / iterations);
  }
  if (sink < 0) console.log(sink);
  return best;
}

for (const [name, text] of Object.entries(DOCUMENTS)) {
  const strict = perCall(parseStrictJson, text);
  const native = perCall(JSON.parse, text);
  console.log(
    `${name.padEnd(6)} ${String(text.length).padStart(4)} B  parseStrictJson ${
      (strict / 1000).toFixed(2)
    } µs  JSON.parse ${(native / 1000).toFixed(2)} µs  (${(strict / native).toFixed(1)}×)`,
  );
}
