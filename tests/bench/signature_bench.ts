/**
 * What signing events costs: Ed25519 signing and verifying per event in
 * process (the message and the status binding, as web and worker do them),
 * and web's accept rate with and without EVENT_SIGNING_KEY, measured back to
 * back on the same Valkey. Bounded in count; asserts nothing.
 */

import { startWeb } from "../helpers/program.ts";
import { generateKeyPair } from "../helpers/signing_keys.ts";
import { TEST_AUDIENCE, type TestIssuer } from "../helpers/issuer.ts";
import { subscribe, type TestValkey } from "../helpers/valkey.ts";
import { encodeEventMessage } from "../../shared/event.ts";
import { importVerifyKeys } from "../../shared/event_signature.ts";
import { createEventVerifier } from "../../worker/event_verifier.ts";
import { createSigner, verifyBinding } from "../../web/event_signer.ts";
import { parseSigningKey, parseVerifyKeys } from "../../shared/event_keys.ts";
import { cpuSeconds } from "./proc.ts";
import type { Row } from "./run.ts";

/** What the signature bench needs from the runner. */
export interface SignatureBenchOptions {
  issuer: TestIssuer;
  valkey: TestValkey;
  quick: boolean;
  record: (row: Row) => void;
  /** Runs tests/bench/load.ts with these arguments. */
  load: (
    args: string[],
  ) => Promise<{ rate: number; p99_ms: number; statuses: Record<string, number> }>;
  /** The permission and V8 flags web runs with in the bench (those of `deno task web`). */
  webPermissions: string[];
  /** Sends one accepted event, so the JWKS fetch and JIT warm-up fall outside the window. */
  warmUp: (url: string) => Promise<void>;
  /** Writes `count` fresh tokens to a file; returns its path. */
  signTokens: (issuer: TestIssuer, count: number) => Promise<string>;
}

async function perOp(count: number, op: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < Math.min(500, count); i++) await op(i); // warm-up
  const started = performance.now();
  for (let i = 0; i < count; i++) await op(i);
  return (performance.now() - started) * 1000 / count;
}

/** Runs the signature scenarios. */
export async function benchSignatures(options: SignatureBenchOptions): Promise<void> {
  const { record } = options;
  const keyPair = await generateKeyPair();
  const signer = await createSigner(parseSigningKey(keyPair.privatePem)!);
  const keys = await importVerifyKeys(parseVerifyKeys(keyPair.publicPem));
  const count = options.quick ? 2000 : 20000;
  const events = Array.from({ length: 64 }, () =>
    encodeEventMessage({
      id: crypto.randomUUID(),
      time: new Date().toISOString(),
      image: "ghcr.io/acme/app",
      tags: ["v1.2.3", "latest"],
    }));
  const rep = "a".repeat(64);
  const signed = await Promise.all(
    events.map(async (e) => (await signer.signEvent(e, rep)).message),
  );
  const first = JSON.parse(events[0]);
  const { kid, sig } = await signer.signEvent(events[0], rep);
  const binding = { repository: rep, image: first.image, tags: first.tags, time: first.time };
  const bindingSig = { ...binding, kid, sig };
  // The worker's check without the replay memory, which admit() adds per event id.
  const verifier = createEventVerifier({ keys, maxAgeMs: 120_000 });
  const scenario = "event signature (in process)";
  const target = "µs, not ms";
  record({
    scenario,
    metric: "web: sign (message and binding)",
    value: await perOp(count, (i) => signer.signEvent(events[i % 64], rep)),
    unit: "µs/op",
    target,
  });
  record({
    scenario,
    metric: "worker: check message",
    value: await perOp(count, (i) => verifier.check(signed[i % 64])),
    unit: "µs/op",
    target,
  });
  record({
    scenario,
    metric: "web: verify status binding",
    value: await perOp(count, () => verifyBinding(keys, first.id, bindingSig)),
    unit: "µs/op",
  });

  // Web's accept rate, unsigned and signed, in alternating pairs (ABBA…) on the same Valkey: a
  // shared machine's noise moves both halves of a pair alike, so the pair's ratio is the figure.
  const sub = await subscribe(options.valkey, "krt-bench-signing");
  const runs: Record<"unsigned" | "signed", { rate: number; cpuMs: number }[]> = {
    unsigned: [],
    signed: [],
  };
  const pairs = options.quick ? 2 : positiveInt("KRT_BENCH_SIGNING_PAIRS", 4);
  try {
    for (let pair = 0; pair < pairs; pair++) {
      const order = pair % 2 === 0
        ? ["unsigned", "signed"] as const
        : ["signed", "unsigned"] as const;
      for (const mode of order) {
        const { program, url } = await startWeb(
          {
            VALKEY_ADDR: options.valkey.addr,
            VALKEY_CHANNEL: "krt-bench-signing",
            ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
            GITHUB_OIDC_ISSUER: options.issuer.url,
            GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
            GITHUB_ALLOWED_ORG: "acme",
            ...(mode === "signed" ? { EVENT_SIGNING_KEY: keyPair.privatePem } : {}),
          },
          [],
          options.webPermissions,
        );
        try {
          await options.warmUp(url);
          const tokens = await options.signTokens(
            options.issuer,
            options.quick ? 2000 : positiveInt("KRT_BENCH_SIGNING_TOKENS", 12000),
          );
          const cpuBefore = cpuSeconds(program.child.pid);
          const result = await options.load([
            "--url",
            `${url}/event`,
            "--tokens",
            tokens,
            "--concurrency",
            "32",
          ]).finally(() => Deno.remove(tokens));
          const cpu = cpuSeconds(program.child.pid) - cpuBefore;
          const run = {
            rate: result.rate,
            cpuMs: cpu * 1000 / Math.max(1, result.statuses["202"] ?? 0),
          };
          runs[mode].push(run);
          // Each run's figures, so a reader sees the spread behind the medians.
          console.error(
            `    pair ${pair + 1} ${mode.padEnd(8)} ${run.rate.toFixed(0).padStart(6)} events/s ${
              run.cpuMs.toFixed(3)
            } ms CPU/event`,
          );
        } finally {
          await program.stop();
        }
      }
    }
  } finally {
    await sub.close();
  }
  for (const mode of ["unsigned", "signed"] as const) {
    record({
      scenario: `web accept c=32 ${mode}`,
      metric: "events/s, median",
      value: median(runs[mode].map((r) => r.rate)),
      unit: "1/s",
    });
    record({
      scenario: `web accept c=32 ${mode}`,
      metric: "server CPU per accepted event",
      value: median(runs[mode].map((r) => r.cpuMs)),
      unit: "ms",
    });
  }
  const ratios = runs.signed.map((r, i) => r.rate / runs.unsigned[i].rate);
  record({
    scenario: "web accept c=32 signed",
    metric: `signed ÷ unsigned (median of ${pairs} pairs)`,
    value: median(ratios) * 100,
    unit: "%",
    target: "≥ 95",
  });
  const cpuRatios = runs.signed.map((r, i) => r.cpuMs / runs.unsigned[i].cpuMs);
  record({
    scenario: "web accept c=32 signed",
    metric: "CPU per event, signed ÷ unsigned",
    value: median(cpuRatios) * 100,
    unit: "%",
  });
  record({
    scenario: "web accept c=32 signed",
    metric: "signed ÷ unsigned, lowest pair",
    value: Math.min(...ratios) * 100,
    unit: "%",
  });
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A whole number above 0 from the environment, or `fallback`; anything else stops the bench. */
function positiveInt(name: string, fallback: number): number {
  const raw = Deno.env.get(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a whole number above 0`);
  return n;
}
