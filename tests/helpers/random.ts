/**
 * A small seeded PRNG and mutators for property tests. The seed comes from
 * KRT_FUZZ_SEED when set, so a failing run can be replayed exactly.
 */

/** mulberry32: fast, seedable, good enough to drive mutations. */
export function createRandom(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (max: number) => Math.floor(next() * max);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)];
  return { next, int, pick };
}

/** The seed for this run: KRT_FUZZ_SEED or a fixed default. */
export function fuzzSeed(): number {
  const fromEnv = Deno.env.get("KRT_FUZZ_SEED");
  return fromEnv ? Number(fromEnv) : 20261121;
}

const SPECIALS = [
  "/",
  ":",
  "@",
  ".",
  "..",
  "-",
  "_",
  "__",
  " ",
  "\u0000",
  "\n",
  "\t",
  "\\",
  '"',
  "'",
  "{",
  "}",
  "[",
  "]",
  ",",
  "A",
  "Z",
  "é",
  "\u202e",
  "%2e",
  "%2F",
  "sha256:",
  "ghcr.io",
  "acme",
  "acme-evil",
  "library/",
  "localhost:5000",
];

/** Returns `text` with 1-4 random edits: flips, deletions, insertions of interesting fragments, duplications. */
export function mutate(text: string, rnd: ReturnType<typeof createRandom>): string {
  let out = text;
  const edits = 1 + rnd.int(4);
  for (let i = 0; i < edits; i++) {
    const at = rnd.int(out.length + 1);
    switch (rnd.int(5)) {
      case 0:
        out = out.slice(0, at) + String.fromCharCode(rnd.int(0x80)) + out.slice(at + 1);
        break;
      case 1:
        out = out.slice(0, at) + out.slice(at + 1 + rnd.int(4));
        break;
      case 2:
        out = out.slice(0, at) + rnd.pick(SPECIALS) + out.slice(at);
        break;
      case 3: {
        const from = rnd.int(out.length + 1);
        out = out.slice(0, at) + out.slice(from, from + rnd.int(12)) + out.slice(at);
        break;
      }
      default:
        out = out.slice(0, at) + String.fromCharCode(rnd.int(0x10000)) + out.slice(at);
    }
  }
  return out;
}
