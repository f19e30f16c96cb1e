/**
 * Property tests over the payload validator and the image reference parser:
 * at least 100,000 generated and mutated inputs each, seeded (KRT_FUZZ_SEED)
 * and reproducible. No input may throw anything but our documented errors,
 * and no accepted event may lie outside the allowed prefixes.
 */

import { assert } from "../helpers/assert.ts";
import { createRandom, fuzzSeed, mutate } from "../helpers/random.ts";
import { AppError } from "../../shared/errors.ts";
import { parseEventMessage, parseEventRequest } from "../../shared/event.ts";
import { isAllowedRepository, parseImagePrefix, parseImageRef } from "../../shared/image_ref.ts";

const PREFIXES = ["ghcr.io/acme", "registry.example.com:5000/team"].map(parseImagePrefix);
const RUNS = 100_000;
const SEEDS_BODIES = [
  '{"image":"ghcr.io/acme/app:dev"}',
  '{"image":"ghcr.io/acme/app","tags":["dev","v1.2.3"]}',
  '{"image":"registry.example.com:5000/team/svc:1.0"}',
  '{"image":"ghcr.io/acme/sub/app","tags":["a_b","C-1.x"]}',
];
const SEED_IMAGES = [
  "ghcr.io/acme/app:dev",
  "nginx",
  "docker.io/library/nginx:1.27",
  "localhost:5000/a/b:c",
  "[::1]:5000/app@sha256:" + "a".repeat(64),
  "GHCR.io/acme/app",
];

Deno.test(`security: parseEventRequest() holds for ${RUNS} mutated bodies (seed ${fuzzSeed()})`, () => {
  const rnd = createRandom(fuzzSeed());
  let accepted = 0;
  for (let i = 0; i < RUNS; i++) {
    const input = mutate(rnd.pick(SEEDS_BODIES), rnd);
    try {
      const event = parseEventRequest(input, PREFIXES);
      accepted++;
      assert(
        isAllowedRepository(event.image, PREFIXES),
        `accepted outside the prefixes: ${JSON.stringify(input)}`,
      );
      assert(
        parseImageRef(event.image).repository === event.image,
        `not normalised: ${event.image}`,
      );
      assert(event.tags.length >= 1 && event.tags.length <= 32, `tags: ${input}`);
    } catch (err) {
      if (
        !(err instanceof AppError) ||
        !["ERR_EVENT_INVALID", "ERR_IMAGE_NOT_ALLOWED"].includes(err.code)
      ) {
        throw new Error(`input ${JSON.stringify(input)} threw ${err}`);
      }
    }
  }
  assert(accepted > 100, `the generator must also produce valid bodies (got ${accepted})`);
});

Deno.test(`security: channel messages obey the same rules for ${RUNS} mutations (seed ${fuzzSeed()})`, () => {
  const rnd = createRandom(fuzzSeed() + 1);
  const seed = JSON.stringify({
    id: "0b6f8c1e-3a52-4d8e-9d55-0d7c1f3b2a10",
    time: "2026-11-21T20:00:00Z",
    image: "ghcr.io/acme/app",
    tags: ["dev"],
  });
  for (let i = 0; i < RUNS; i++) {
    const input = mutate(seed, rnd);
    try {
      const message = parseEventMessage(input, PREFIXES);
      assert(
        isAllowedRepository(message.image, PREFIXES),
        `accepted outside the prefixes: ${input}`,
      );
    } catch (err) {
      if (!(err instanceof AppError)) {
        throw new Error(`input ${JSON.stringify(input)} threw ${err}`);
      }
    }
  }
});

Deno.test(`parseImageRef() is total and idempotent over ${RUNS} mutated references (seed ${fuzzSeed()})`, () => {
  const rnd = createRandom(fuzzSeed() + 2);
  let parsed = 0;
  for (let i = 0; i < RUNS; i++) {
    const input = mutate(rnd.pick(SEED_IMAGES), rnd);
    let ref;
    try {
      ref = parseImageRef(input);
    } catch (err) {
      if (!(err instanceof Error) || err instanceof AppError) {
        throw new Error(`${JSON.stringify(input)} threw ${err}`);
      }
      continue;
    }
    parsed++;
    const again = parseImageRef(ref.repository);
    assert(
      again.repository === ref.repository,
      `not idempotent: ${input} -> ${ref.repository} -> ${again.repository}`,
    );
    assert(!/\.\.|\/\/|[A-Z\s]/.test(ref.path), `bad path accepted: ${JSON.stringify(input)}`);
    assert(ref.domain === ref.domain.toLowerCase(), `host not lower-cased: ${input}`);
  }
  assert(parsed > 1000, `the generator must also produce valid references (got ${parsed})`);
});
