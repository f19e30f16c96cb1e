/**
 * startClusterRegistration() on the in-memory Valkey with a fake clock: it
 * registers at once and then every interval, announces the cluster to web only
 * while serving, and a second cluster under the same CLUSTER_NAME refuses with
 * one error line naming both (logged once), writes nothing, and takes the name
 * over once the first has been silent for the live window. The registration
 * script is registered here with the semantics of its Lua; the Lua itself runs
 * against a real server in
 * tests/integration/worker/cluster_registration_script_test.ts.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { fakeClock } from "../helpers/fake_clock.ts";
import { MemoryValkey } from "../helpers/memory_valkey.ts";
import { CA, kubeconfig, SECRET, withFiles } from "../helpers/kubeconfig_cases.ts";
import { createLogger, type LogFields } from "../../lib/log.ts";
import { CLUSTERS_KEY } from "../../shared/event_status.ts";
import { keySlot } from "../../shared/valkey_slots.ts";
import { apiServerIdentity, type ClusterIdentity } from "../../worker/cluster_identity.ts";
import { CLUSTER_IDENTITIES_KEY, NAME_HOLD_MS } from "../../worker/cluster_registration_script.ts";
import {
  type ClusterRegistration,
  type ClusterRegistrationOptions,
  startClusterRegistration,
  STARTUP_GRACE_MS,
} from "../../worker/cluster_registration.ts";
import { loadKubeAccess } from "../../worker/kube/config.ts";

const START = 1_000_000;
const EAST: ClusterIdentity = { fingerprints: ["aaaaaaaaaaaaaaaa"], about: "https://east:6443" };
const WEST: ClusterIdentity = { fingerprints: ["bbbbbbbbbbbbbbbb"], about: "https://west:6443" };

type Line = LogFields & { msg: string; level: string };

/** The script's decisions as its Lua makes them (lenient reading; the Lua is the strict one). */
function registerTwin(v: MemoryValkey, keys: string[], args: string[]): unknown {
  const [clusters, identities] = keys;
  const [name, nowText, liveText, record, announce, ...mine] = args;
  const [now, live] = [Number(nowText), Number(liveText)];
  let other: string | undefined;
  try {
    const stored = JSON.parse(v.hash(identities)[name]);
    if (!stored.fingerprints.some((f: string) => mine.includes(f))) {
      if (stored.at >= now - live && stored.at <= now + live) return [0, stored.about];
      other = stored.about;
    }
  } catch {
    // None, or unreadable: stale.
  }
  v.run(["HSET", identities, name, record]);
  if (announce === "1") v.run(["ZADD", clusters, nowText, name]);
  return other === undefined ? [1] : [2, other];
}

function world() {
  const clock = fakeClock(START);
  const valkey = new MemoryValkey({ now: clock.now }).script("rec.fingerprints", registerTwin);
  const lines: Line[] = [];
  const logger = createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) });
  const stops: AbortController[] = [];
  /** One worker replica; `serving` is what the worker passes as its gate. */
  const worker = (
    identity: ClusterIdentity,
    extra: Partial<ClusterRegistrationOptions> = {},
  ) => {
    const stop = new AbortController();
    stops.push(stop);
    const serving = { value: false };
    const registration = startClusterRegistration({
      client: valkey,
      clusterName: "prod",
      identity,
      serving: () => serving.value,
      logger,
      signal: stop.signal,
      clock,
      intervalMs: 10_000,
      pollMs: 1000,
      retryMs: 2000,
      ...extra,
    });
    return { registration, serving, stop };
  };
  const stored = () => JSON.parse(valkey.hash(CLUSTER_IDENTITIES_KEY).prod ?? "null");
  const scripts = () => valkey.calls.map((c) => c[0]).filter((c) => c.startsWith("EVAL"));
  const finish = async () => {
    for (const stop of stops) stop.abort();
    await clock.advance(0);
  };
  return { clock, valkey, lines, worker, stored, scripts, finish };
}

/** True once `registration.whenRegistered()` resolved (checked after the clock moved). */
function watchRegistered(registration: ClusterRegistration, signal: AbortSignal) {
  const seen = { value: false };
  void registration.whenRegistered(signal).then(() => seen.value = true);
  return seen;
}

Deno.test("startClusterRegistration() registers at once, announces only while serving, then every interval", async () => {
  const w = world();
  const east = w.worker(EAST);
  const seen = watchRegistered(east.registration, east.stop.signal);
  await w.clock.advance(0);
  assert(east.registration.registered() && seen.value, "registered before serving");
  assertEquals(east.registration.conflict(), undefined);
  assertEquals(w.stored(), { fingerprints: EAST.fingerprints, about: EAST.about, at: START });
  assertEquals(w.valkey.zset(CLUSTERS_KEY), [], "not announced while not serving");
  assertEquals(east.registration.announced(), false, "not ready: web does not know it yet");
  assertEquals(w.scripts(), ["EVALSHA", "EVAL"], "NOSCRIPT, then the script");

  await w.clock.advance(3000);
  east.serving.value = true;
  await w.clock.advance(1000);
  assertEquals(w.valkey.zset(CLUSTERS_KEY), [["prod", START + 4000]], "at once when serving");
  assertEquals(east.registration.announced(), true);
  await w.clock.advance(9000);
  assertEquals(w.valkey.zset(CLUSTERS_KEY), [["prod", START + 4000]], "not before the interval");
  await w.clock.advance(1000);
  assertEquals(w.valkey.zset(CLUSTERS_KEY), [["prod", START + 14_000]], "again after it");
  assertEquals(w.scripts().slice(2), ["EVALSHA", "EVALSHA"], "one call each");

  east.serving.value = false;
  await w.clock.advance(30_000);
  assertEquals(w.valkey.zset(CLUSTERS_KEY), [["prod", START + 14_000]], "silent while not serving");
  assertEquals(east.registration.announced(), false);
  assertEquals(w.stored().at, START + 44_000, "the identity is still kept live");
  east.serving.value = true;
  await w.clock.advance(1000);
  assertEquals(
    w.valkey.zset(CLUSTERS_KEY),
    [["prod", START + 45_000]],
    "at once when serving again",
  );
  assertEquals(w.lines.map((l) => [l.level, l.msg]), [["info", "cluster name registered"]]);
  await w.finish();
  await east.registration.done;
});

Deno.test("a second cluster under the same CLUSTER_NAME refuses: one error line naming both, logged once, nothing written", async () => {
  const w = world();
  const east = w.worker(EAST);
  east.serving.value = true;
  await w.clock.advance(0);
  const changes: (string | undefined)[] = [];
  const west = w.worker(WEST, { onConflictChange: (line) => changes.push(line) });
  west.serving.value = true;
  const seen = watchRegistered(west.registration, west.stop.signal);
  const before = { hash: w.stored(), zset: w.valkey.zset(CLUSTERS_KEY) };
  await w.clock.advance(0);
  const line =
    'CLUSTER_NAME "prod" is held by another cluster (https://east:6443) — this worker is https://west:6443; give each cluster its own CLUSTER_NAME';
  assertEquals(west.registration.conflict(), line);
  assertEquals(west.registration.registered(), false);
  assertEquals(seen.value, false, "whenRegistered() waits");
  assertEquals({ hash: w.stored(), zset: w.valkey.zset(CLUSTERS_KEY) }, before, "nothing written");

  await w.clock.advance(25_000); // east keeps beating; west tries every interval
  assertEquals(west.registration.conflict(), line);
  const errors = w.lines.filter((l) => l.level === "error");
  assertEquals(errors.length, 1, "logged once, not every interval");
  assertEquals(errors[0].msg, line);
  assertEquals(errors[0].other, "https://east:6443");
  assertEquals(changes, [line]);
  assertEquals(w.stored().about, EAST.about);
  assertEquals(east.registration.conflict(), undefined, "the first keeps its name");
  await w.finish();
});

Deno.test("the second cluster takes the name over only once the first has been silent for the hold (a day), and logs it", async () => {
  const w = world();
  const east = w.worker(EAST);
  await w.clock.advance(0);
  // West tries once an hour here, so the fake clock crosses the day in few steps.
  const west = w.worker(WEST, { intervalMs: 3_600_000, pollMs: 600_000 });
  const seen = watchRegistered(west.registration, west.stop.signal);
  await w.clock.advance(0);
  assert(west.registration.conflict() !== undefined);
  east.stop.abort(); // east's last record: START
  await w.clock.advance(NAME_HOLD_MS - 1000);
  assert(west.registration.conflict() !== undefined, "still held just before the hold ends");
  await w.clock.advance(3_601_000); // west's first attempt after the hold takes it
  assertEquals(west.registration.conflict(), undefined);
  assert(west.registration.registered() && seen.value);
  assertEquals(w.stored().about, WEST.about);
  const warn = w.lines.find((l) => l.level === "warn")!;
  assertMatch(
    warn.msg,
    /^CLUSTER_NAME "prod" was registered by another cluster \(https:\/\/east:6443\), silent for over 24 h: this cluster takes the name over$/,
  );

  // East comes back while west holds the name: now east refuses.
  const eastAgain = w.worker(EAST);
  await w.clock.advance(0);
  assertMatch(
    eastAgain.registration.conflict()!,
    /held by another cluster \(https:\/\/west:6443\)/,
  );
  await w.finish();
});

Deno.test("replicas of one cluster, and replicas on either side of a CA rotation, are one cluster", async () => {
  const w = world();
  const rotated: ClusterIdentity = {
    fingerprints: ["aaaaaaaaaaaaaaaa", "cccccccccccccccc"],
    about: "https://east:6443 (rotating)",
  };
  const replicas = [w.worker(EAST), w.worker(EAST), w.worker(rotated)];
  for (const r of replicas) r.serving.value = true;
  await w.clock.advance(0);
  await w.clock.advance(30_000);
  for (const r of replicas) assert(r.registration.registered() && !r.registration.conflict());
  assertEquals(w.valkey.zset(CLUSTERS_KEY).length, 1, "one member for the cluster");
  assertEquals(w.lines.filter((l) => l.level !== "info"), []);
  await w.finish();
});

Deno.test("a failed attempt is logged once and retried every retryMs; the state it had is kept", async () => {
  const w = world();
  let attempts = 0;
  const counting = {
    call: (command: string, ...args: (string | number)[]) => {
      attempts++;
      return w.valkey.call(command, ...args);
    },
  };
  const east = w.worker(EAST, { client: counting });
  east.serving.value = true;
  await w.clock.advance(0);
  const west = w.worker(WEST);
  await w.clock.advance(0);
  const line = west.registration.conflict();
  w.valkey.down = true;
  const calls = w.valkey.calls.length;
  attempts = 0;
  await w.clock.advance(10_000);
  assertEquals(attempts, 5, "every 2 s, not every poll, though serving");
  assertEquals(west.registration.conflict(), line, "still refusing while Valkey is down");
  assert(east.registration.registered(), "still registered while Valkey is down");
  const warns = w.lines.filter((l) => l.msg.startsWith("cluster heartbeat failed"));
  assertEquals(warns.length, 2, "once per worker");
  w.valkey.down = false;
  await w.clock.advance(2000);
  assert(w.valkey.calls.length > calls, "tried again within retryMs");
  assertEquals(w.lines.filter((l) => l.msg === "cluster heartbeat written again").length, 2);
  await w.finish();
});

Deno.test("failures while Valkey's connection opens at start are quiet; one that lasts is logged", async () => {
  const w = world();
  w.valkey.down = true;
  const east = w.worker(EAST);
  await w.clock.advance(STARTUP_GRACE_MS - 1000);
  w.valkey.down = false;
  await w.clock.advance(2000);
  assert(east.registration.registered());
  assertEquals(w.lines.map((l) => l.msg), ["cluster name registered"], "no warning, no recovery");
  east.stop.abort();
  w.valkey.down = true;
  const west = w.worker(WEST);
  await w.clock.advance(STARTUP_GRACE_MS - 1000);
  assertEquals(w.lines.filter((l) => l.level === "warn").length, 0, "within its grace");
  await w.clock.advance(2000);
  assertEquals(w.lines.filter((l) => l.level === "warn").length, 1, "after it");
  assertEquals(west.registration.registered(), false);
  await w.finish();
});

Deno.test("whenRegistered() and done resolve when a signal aborts, even one aborted at the start", async () => {
  const w = world();
  w.valkey.down = true;
  const east = w.worker(EAST);
  const mine = new AbortController();
  const seen = watchRegistered(east.registration, mine.signal);
  await w.clock.advance(5000);
  assertEquals(seen.value, false);
  mine.abort();
  await w.clock.advance(0);
  assertEquals(seen.value, true);
  const other = watchRegistered(east.registration, new AbortController().signal);
  east.stop.abort();
  await east.registration.done;
  await w.clock.advance(0);
  assertEquals(other.value, true, "the registration stopped");
  const late = startClusterRegistration({
    client: w.valkey,
    clusterName: "prod",
    identity: EAST,
    serving: () => true,
    logger: createLogger({ level: "error", write: () => {} }),
    signal: AbortSignal.abort(),
    clock: w.clock,
  });
  await late.done;
  await late.whenRegistered(new AbortController().signal);
  await w.finish();
});

Deno.test("security: what the script answers is checked before it reaches the log", async (t) => {
  const answers: [string, unknown, (lines: Line[], r: ClusterRegistration) => void][] = [
    ["an unprintable about", [0, "\u001b[31mevil\u0007"], (lines, r) => {
      assertMatch(r.conflict()!, /another cluster \(a record that cannot be shown\)/);
      assert(!JSON.stringify(lines).includes("evil"));
    }],
    ["an overlong about", [0, "x".repeat(500)], (_, r) => {
      assertMatch(r.conflict()!, /a record that cannot be shown/);
    }],
    ["an odd answer", "OK", (lines, r) => {
      assertEquals(r.registered(), false);
      assertEquals(lines.map((l) => l.msg), [
        "cluster heartbeat failed; web may not count this cluster as live",
      ], "once it lasted the start-up grace");
      assertMatch(String(lines[0].error), /oddly/);
    }],
  ];
  for (const [name, answer, check] of answers) {
    await t.step(name, async () => {
      const clock = fakeClock(START);
      const valkey = new MemoryValkey({ now: clock.now }).script("rec.fingerprints", () => answer);
      const lines: Line[] = [];
      const stop = new AbortController();
      const registration = startClusterRegistration({
        client: valkey,
        clusterName: "prod",
        identity: EAST,
        serving: () => true,
        logger: createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) }),
        signal: stop.signal,
        clock,
      });
      await clock.advance(0);
      await clock.advance(STARTUP_GRACE_MS);
      check(lines, registration);
      stop.abort();
      await registration.done;
    });
  }
});

Deno.test("security: a malformed stored record is overwritten, and the conflict line carries no credential", async () => {
  const w = world();
  await withFiles({ config: kubeconfig(`token: ${SECRET}`), "ca.crt": CA }, async (dir) => {
    const access = await loadKubeAccess({ kubeconfig: `${dir}/config` });
    access.httpClient.close();
    w.valkey.run(["HSET", CLUSTER_IDENTITIES_KEY, "prod", '{"fingerprints":'.repeat(100)]);
    const east = w.worker(EAST);
    await w.clock.advance(0);
    assert(east.registration.registered(), "the unreadable record was stale");
    const west = w.worker(apiServerIdentity(access));
    await w.clock.advance(0);
    const line = west.registration.conflict()!;
    assertMatch(line, /this worker is https:\/\/127\.0\.0\.1:6443, CA sha256:59a2ed65535bb5f6;/);
    assert(!JSON.stringify(w.lines).includes(SECRET) && !line.includes(SECRET));
    assert(!JSON.stringify(w.valkey.hash(CLUSTER_IDENTITIES_KEY)).includes(SECRET));
  });
  await w.finish();
});

Deno.test("CLUSTER_IDENTITIES_KEY shares CLUSTERS_KEY's slot, so the script runs in a Valkey Cluster", () => {
  assertEquals(keySlot(CLUSTER_IDENTITIES_KEY), keySlot(CLUSTERS_KEY));
  assertEquals(CLUSTER_IDENTITIES_KEY, "{kuberollouttrigger}:cluster-identities");
});
