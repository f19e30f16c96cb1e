/**
 * GET /event/<id> in-process: who may read a record, the 400s, waiting for a
 * change without polling, and the bound on waiters. The real program and a
 * real Valkey are exercised in tests/e2e/.
 */

import { assert, assertEquals, assertMatch } from "../helpers/assert.ts";
import { AppError } from "../../shared/errors.ts";
import { orgOnlyPolicy } from "../helpers/issuer.ts";
import { memoryStatus, permissiveReplay } from "../helpers/web_deps.ts";
import { type ClusterReport, emptyCounts } from "../../shared/event_status.ts";
import { createLogger, type LogFields } from "../../lib/log.ts";
import { createRegistry } from "../../lib/metrics.ts";
import { createHandler } from "../../web/handler.ts";
import { createWebMetrics } from "../../web/metrics.ts";
import type { GitHubClaims } from "../../web/oidc.ts";
import { createAuthorizer } from "../../web/policy.ts";
import { parseStatusRequest } from "../../web/status_route.ts";

const INFO = { remoteAddr: { hostname: "127.0.0.1", port: 1 } };
const ID = "0b6f1f0e-3c1a-4d2b-9e8f-1a2b3c4d5e6f";

function claimsFor(repositoryId: string): GitHubClaims {
  return {
    iss: "https://issuer",
    jti: crypto.randomUUID(),
    iat: 1000,
    exp: 1300,
    repository: "acme/app",
    repository_owner: "acme",
    repository_id: repositoryId,
  } as GitHubClaims;
}

interface SetUpOptions {
  maxWaiters?: number;
  clusters?: string[];
  /** Which of `clusters` were not live when the event was published. */
  unreachable?: string[];
  now?: () => Date;
  /** Runs after each read has taken its snapshot, before the route sees it. */
  afterRead?: (id: string) => void;
  /** The handler's shutdown signal. */
  signal?: AbortSignal;
  /** Reads fail (Valkey away) while this says so. */
  failReads?: () => boolean;
}

function setUp(options: SetUpOptions = {}) {
  const status = memoryStatus(options);
  let reads = 0;
  const reader = status.statusReader;
  const registry = createRegistry();
  const lines: LogFields[] = [];
  const handler = createHandler({
    // Tokens name the repository id they stand for: "repo-2002" → 2002.
    verify: (token) => Promise.resolve(claimsFor(token.replace("repo-", ""))),
    authorize: createAuthorizer(orgOnlyPolicy()),
    publisher: status.publisher,
    statusReader: {
      read: async (id) => {
        reads++;
        if (options.failReads?.()) throw new AppError("ERR_PUBLISH_FAILED", "status read failed");
        const snapshot = await reader.read(id);
        options.afterRead?.(id);
        return snapshot;
      },
    },
    statusWaiters: status.statusWaiters,
    statusReportTimeoutMs: 30_000,
    replay: {
      ...permissiveReplay(),
      claim: (use) => {
        if (use.body === "") throw new Error("a status read went through the replay guard");
        return permissiveReplay().claim(use);
      },
    },
    prefixes: ["ghcr.io/acme"],
    logger: createLogger({ level: "debug", write: (l) => lines.push(JSON.parse(l)) }),
    metrics: createWebMetrics(registry),
    registry,
    readiness: {},
    now: options.now,
    signal: options.signal,
  });
  const post = async (token = "repo-2002") => {
    const res = await handler(
      new Request("http://127.0.0.1/event", {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: '{"image":"ghcr.io/acme/app:dev"}',
      }),
      INFO,
    );
    assertEquals(res.status, 202);
    return await res.json();
  };
  const get = (path: string, token = "repo-2002", signal?: AbortSignal) =>
    handler(
      new Request(`http://127.0.0.1${path}`, {
        headers: { authorization: `Bearer ${token}` },
        signal,
      }),
      INFO,
    );
  /** The kuberollouttrigger_status_waiters gauge as exported now. */
  const waitersGauge = () =>
    Number(/^kuberollouttrigger_status_waiters (\d+)$/m.exec(registry.render())?.[1]);
  return { status, handler, post, get, registry, lines, reads: () => reads, waitersGauge };
}

function doneReport(cluster: string): ClusterReport {
  return {
    cluster,
    state: "succeeded",
    matched: 1,
    counts: { ...emptyCounts(), restarted: 1, complete: 1 },
    deployments: [{
      namespace: "staging",
      name: "api",
      result: "restarted",
      rollout: { state: "complete", replicas: 1, updated: 1, ready: 1, available: 1 },
    }],
    omitted: 0,
    updated: new Date().toISOString(),
  };
}

Deno.test("parseStatusRequest() refuses malformed ids and query strings with a short reason", async (t) => {
  const cases: [string, string | number][] = [
    [`/event/${ID}`, 0],
    [`/v1/event/${ID}?wait=25`, 25_000],
    [`/event/${ID}?wait=60`, 60_000],
    [`/event/${ID}?wait=0`, 0],
    [`/event/not-a-uuid`, "event id"],
    [`/event/${ID.toUpperCase()}`, "event id"],
    [`/event/`, "event id"],
    [`/event/${ID}?wait=61`, "wait must be"],
    [`/event/${ID}?wait=-1`, "wait must be"],
    [`/event/${ID}?wait=1.5`, "wait must be"],
    [`/event/${ID}?wait=`, "wait must be"],
    [`/event/${ID}?wait=1&wait=2`, "more than once"],
    [`/event/${ID}?token=x`, "only query parameter"],
    [`/event/${ID}?wait=1&${"x".repeat(5000)}`, "too long"],
  ];
  for (const [path, expected] of cases) {
    await t.step(path.slice(0, 80), () => {
      const parsed = parseStatusRequest(new URL(`http://h${path}`));
      if (typeof expected === "number") assertEquals(parsed, { id: ID, waitMs: expected });
      else assertMatch("error" in parsed ? parsed.error : "", new RegExp(expected));
    });
  }
});

Deno.test("GET /event/<id> answers the poster's repository with the record's state", async () => {
  const { post, get, status } = setUp({ clusters: ["east"] });
  const accepted = await post();
  assertEquals(accepted.clusters, ["east"]);
  assertEquals(accepted.status, `/event/${accepted.id}`);
  const first = await get(accepted.status);
  assertEquals(first.status, 200);
  const body = await first.json();
  assertEquals([body.state, body.final, body.image, body.tags], [
    "pending",
    false,
    "ghcr.io/acme/app",
    ["dev"],
  ]);
  status.report(accepted.id, doneReport("east"));
  const done = await (await get(`/v1${accepted.status}`)).json();
  assertEquals([done.state, done.final], ["succeeded", true]);
  assertEquals(done.clusters[0].deployments[0].rollout.state, "complete");
});

Deno.test("GET /event/<id> shows a known cluster that was not live as pending with why, then no_report; its late report still counts", async () => {
  let now = Date.parse("2026-12-01T10:00:00Z");
  const { post, get, status } = setUp({
    clusters: ["east", "west"],
    unreachable: ["west"],
    now: () => new Date(now),
  });
  const accepted = await post();
  status.report(accepted.id, doneReport("east"));
  const early = await (await get(accepted.status)).json();
  assertEquals([early.state, early.final], ["in_progress", false]);
  const west = () => early.clusters.find((c: { cluster: string }) => c.cluster === "west");
  assertEquals(west().state, "pending");
  assertMatch(west().reason, /not live when the event was published/);
  assertEquals(early.clusters[0].reason, undefined, "a live cluster needs no explanation");
  now += 30_000;
  const late = await (await get(accepted.status)).json();
  assertEquals([late.state, late.final], ["failed", true]);
  assertEquals(late.clusters[1].state, "no_report");
  assertMatch(late.clusters[1].reason, /not live when the event was published.*within 30s/);
  // The cluster caught up when it came back: the answer follows its report.
  status.report(accepted.id, doneReport("west"));
  const caughtUp = await (await get(accepted.status)).json();
  assertEquals([caughtUp.state, caughtUp.final], ["succeeded", true]);
  assertEquals(caughtUp.clusters[1].reason, undefined);
});

Deno.test("security: GET /event/<id> answers one identical 404 for unknown, expired and other repositories' ids", async () => {
  const { post, get, status } = setUp();
  const accepted = await post("repo-2002");
  const answers = [
    await get(`/event/${accepted.id}`, "repo-3003"), // another repository, same org
    await get(`/event/${ID}`), // unknown
  ];
  status.records.delete(accepted.id); // expired
  answers.push(await get(`/event/${accepted.id}`));
  for (const res of answers) {
    assertEquals(res.status, 404);
    assertEquals(await res.text(), '{"error":"not found"}');
  }
});

Deno.test("security: GET /event/<id> authenticates before it looks at the id", async () => {
  const { handler } = setUp();
  const res = await handler(new Request("http://127.0.0.1/event/bad-id?wait=999"), INFO);
  assertEquals(res.status, 403);
});

Deno.test("GET /event/<id>?wait= returns as soon as a report arrives, with one read per change", async () => {
  const { post, get, status, reads } = setUp({ clusters: ["east"] });
  const accepted = await post();
  const before = reads();
  setTimeout(() => status.report(accepted.id, doneReport("east")), 100);
  const started = Date.now();
  const body = await (await get(`${accepted.status}?wait=30`)).json();
  assertEquals(body.state, "succeeded");
  assert(Date.now() - started < 10_000, "the wait ended with the report, not at its deadline");
  assertEquals(reads() - before, 2); // the first read, and one after the change
});

Deno.test("GET /event/<id>?wait= without a change answers at the deadline after exactly two reads", async () => {
  const { post, get, reads } = setUp({ clusters: ["east"] });
  const accepted = await post();
  const before = reads();
  const body = await (await get(`${accepted.status}?wait=1`)).json();
  assertEquals([body.state, body.final], ["pending", false]);
  assertEquals(reads() - before, 2); // no polling in between
});

Deno.test("security: waiting status reads are bounded; one past the bound gets 429 with Retry-After", async () => {
  const { post, get, status, registry } = setUp({ maxWaiters: 1, clusters: ["east"] });
  const accepted = await post();
  const waiting = get(`${accepted.status}?wait=30`);
  await new Promise((r) => setTimeout(r, 50));
  const refused = await get(`${accepted.status}?wait=30`);
  assertEquals(refused.status, 429);
  assertEquals(refused.headers.get("retry-after"), "5");
  status.report(accepted.id, doneReport("east"));
  assertEquals((await (await waiting).json()).state, "succeeded");
  assertMatch(registry.render(), /kuberollouttrigger_status_reads_total\{answer="busy"\} 1/);
});

Deno.test("status read metrics are exported at 0 from start-up", () => {
  const { registry } = setUp();
  const text = registry.render();
  for (const answer of ["succeeded", "failed", "no_match", "not_found", "busy"]) {
    assertMatch(
      text,
      new RegExp(`kuberollouttrigger_status_reads_total\\{answer="${answer}"\\} 0`),
    );
  }
});

Deno.test("GET /event/<id>?wait= is woken by a change announced while its read was in flight", async () => {
  let land: ((id: string) => void) | undefined;
  const { post, get, status } = setUp({ clusters: ["east"], afterRead: (id) => land?.(id) });
  const accepted = await post();
  // The report lands (and is announced) just after the first read took its snapshot.
  land = (id) => {
    land = undefined;
    status.report(id, doneReport("east"));
  };
  const started = Date.now();
  const body = await (await get(`${accepted.status}?wait=30`)).json();
  assertEquals(body.state, "succeeded");
  assert(
    Date.now() - started < 10_000,
    "the announcement was missed; the wait ran to its deadline",
  );
});

/** Resolves once `check` holds, polling each millisecond (in-process: a few turns at most). */
async function until(what: string, check: () => boolean): Promise<void> {
  for (let i = 0; !check(); i++) {
    if (i > 2000) throw new Error(`${what} did not happen within 2 s`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

Deno.test("GET /event/<id>?wait= frees its slot the moment its client goes away", async () => {
  const { post, get, status, lines, reads, waitersGauge } = setUp({
    maxWaiters: 2,
    clusters: ["east"],
  });
  const events = [await post("repo-2002"), await post("repo-3003"), await post("repo-4004")];
  const clients = [new AbortController(), new AbortController()];
  const held = clients.map((client, i) =>
    get(`${events[i].status}?wait=60`, `repo-${["2002", "3003"][i]}`, client.signal)
  );
  await until("two waiters", () => waitersGauge() === 2);
  const refused = await get(`${events[2].status}?wait=60`, "repo-4004");
  assertEquals(refused.status, 429, "every slot is held");
  await refused.body?.cancel();
  // Both clients go away: nothing changed, no deadline passed, yet both slots are free.
  const readsBefore = reads();
  for (const client of clients) client.abort();
  await until("both slots freed", () => status.statusWaiters.size() === 0);
  const answers = await Promise.all(held);
  assertEquals(answers.map((r) => r.status), [499, 499]);
  assertEquals(reads(), readsBefore, "nothing is read for a client that left");
  assertEquals([status.statusWaiters.size(), waitersGauge()], [0, 0]);
  const gone = lines.filter((l) => l.reason === "client_gone");
  assertEquals(gone.map((l) => [l.status, l.level]), [[499, "info"], [499, "info"]]);
  // A new waiting read is admitted at once, and answers when the record changes.
  const next = get(`${events[2].status}?wait=60`, "repo-4004");
  await until("the new waiter", () => status.statusWaiters.size() === 1);
  status.report(events[2].id, doneReport("east"));
  assertEquals([(await next).status, status.statusWaiters.size()], [200, 0]);
});

Deno.test("GET /event/<id>?wait= whose read fails (503) frees its slot at once, not at its deadline", async () => {
  let failing = false;
  const { post, get, status } = setUp({
    maxWaiters: 1,
    clusters: ["east"],
    failReads: () => failing,
  });
  const event = await post();
  failing = true;
  const failed = await get(`${event.status}?wait=60`);
  assertEquals(failed.status, 503);
  await failed.body?.cancel();
  assertEquals(status.statusWaiters.size(), 0, "the slot of a read that failed");
  failing = false;
  const next = get(`${event.status}?wait=60`);
  await until("the next waiter", () => status.statusWaiters.size() === 1);
  status.report(event.id, doneReport("east"));
  assertEquals((await next).status, 200);
});

Deno.test("security: GET /event/<id>?wait= holds at most a repository's fair share of the waiters; the others still wait", async () => {
  // A bound of 4: each repository may hold one.
  const { post, get, status, lines } = setUp({ maxWaiters: 4, clusters: ["east"] });
  const mine = await post("repo-2002");
  const theirs = await post("repo-3003");
  const held = get(`${mine.status}?wait=60`, "repo-2002");
  await until("the first waiter", () => status.statusWaiters.size() === 1);
  // wait=2: were it admitted, it would answer 200 within 2 s.
  const refused = await get(`${mine.status}?wait=2`, "repo-2002");
  assertEquals(refused.status, 429);
  assertEquals(refused.headers.get("retry-after"), "5");
  assertEquals(await refused.json(), {
    error: "too many requests of this repository are waiting; retry shortly",
  });
  const line = lines.findLast((l) => l.status === 429)!;
  assertEquals([line.reason, line.repository], ["repository_waiters", "acme/app"]);
  // A read that does not wait takes no slot, so it is never refused.
  assertEquals((await get(mine.status, "repo-2002")).status, 200);
  // Another repository still finds a slot.
  const other = get(`${theirs.status}?wait=60`, "repo-3003");
  await until("the other repository's waiter", () => status.statusWaiters.size() === 2);
  status.report(mine.id, doneReport("east"));
  status.report(theirs.id, doneReport("east"));
  assertEquals([(await held).status, (await other).status], [200, 200]);
});

Deno.test("GET /event/<id>?wait= answers at once with the state as it is when web shuts down", async () => {
  const shutdown = new AbortController();
  const { post, get, status } = setUp({ clusters: ["east"], signal: shutdown.signal });
  const accepted = await post();
  const held = get(`${accepted.status}?wait=60`);
  await until("the waiter", () => status.statusWaiters.size() === 1);
  const started = Date.now();
  shutdown.abort();
  const res = await held;
  assertEquals(res.status, 200);
  assertEquals((await res.json()).state, "pending");
  assert(Date.now() - started < 1000, "answered at shutdown, not at its deadline");
  // A read that arrives during the shutdown is not taken on (tests/web/handler_test.ts).
  const late = await get(`${accepted.status}?wait=60`);
  assertEquals([late.status, status.statusWaiters.size()], [503, 0]);
});
