import { BINDING, counts, report } from "../helpers/status_fixtures.ts";
import { assert, assertEquals, assertThrows } from "../helpers/assert.ts";
import { AppError } from "../../shared/errors.ts";
import {
  type ClusterReport,
  clusterStateOf,
  MAX_REPORTED_DEPLOYMENTS,
  parseBinding,
  parseClusterReport,
  parseUnreachable,
  type ReportCounts,
} from "../../shared/event_status.ts";

Deno.test("clusterStateOf() reads a cluster's counts as kubectl rollout status would end", async (t) => {
  // [name, counts, matched, state]
  const cases: [string, Partial<ReportCounts>, number | undefined, string][] = [
    ["nothing matched", {}, 0, "no_match"],
    ["only digest-pinned skips: nothing matched", { skipped: 2 }, 0, "no_match"],
    ["every match skipped (paused, opted out)", { skipped: 2 }, 2, "skipped"],
    ["some restarted, some skipped", { restarted: 1, complete: 1, skipped: 1 }, 2, "succeeded"],
    [
      "restarted, rollout still going",
      { restarted: 2, complete: 1, progressing: 1 },
      undefined,
      "in_progress",
    ],
    ["restarted and complete", { restarted: 2, complete: 2 }, undefined, "succeeded"],
    ["a restart failed", { restarted: 1, complete: 1, failed: 1 }, undefined, "failed"],
    ["a rollout failed", { restarted: 2, complete: 1, rollout_failed: 1 }, undefined, "failed"],
    [
      "failure known, another still going",
      { failed: 1, restarted: 1, progressing: 1 },
      undefined,
      "in_progress",
    ],
    ["dry run: nothing restarted is not succeeded", { dry_run: 3 }, 3, "dry_run"],
  ];
  for (const [name, c, matched, expected] of cases) {
    const all = counts(c);
    const m = matched ?? all.restarted + all.failed + all.dry_run + all.skipped;
    await t.step(name, () => assertEquals(clusterStateOf(all, m), expected));
  }
});

Deno.test("parseClusterReport() reads back exactly what a worker writes", () => {
  const written: ClusterReport = {
    ...report("east", { restarted: 1, progressing: 1, skipped: 1 }),
    deployments: [
      {
        namespace: "staging",
        name: "api",
        result: "restarted",
        rollout: { state: "progressing", replicas: 3, updated: 1, ready: 2, available: 2 },
      },
      { namespace: "staging", name: "batch", result: "skipped", reason: "paused" },
    ],
  };
  assertEquals(parseClusterReport(JSON.stringify(written)), written);
});

Deno.test("parseClusterReport() reads an expired cluster's report and its reason", () => {
  const written: ClusterReport = {
    ...report("west", {}),
    state: "expired",
    reason: "the event is older than the catch-up window (1h) when the cluster took it up",
  };
  assertEquals(parseClusterReport(JSON.stringify(written)), written);
  const { reason: _, ...without } = written;
  const read = parseClusterReport(JSON.stringify(without));
  assertEquals("reason" in read, false, "no reason member is made up");
});

Deno.test("parseUnreachable() reads web's list of clusters that were not live", () => {
  assertEquals(parseUnreachable('["east","west.eu-1_a"]'), ["east", "west.eu-1_a"]);
  assertEquals(parseUnreachable("[]"), []);
  const most = Array.from({ length: 1000 }, (_, i) => `c${i}`);
  assertEquals(parseUnreachable(JSON.stringify(most)), most);
});

Deno.test("security: parseUnreachable() refuses what web never writes, without quoting it", async (t) => {
  const secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0";
  const cases: [string, string][] = [
    ["not JSON", `["${secret}`],
    ["an object", JSON.stringify({ east: secret })],
    ["a string", JSON.stringify(secret)],
    ["a number in the list", "[1]"],
    ["a name with a space", JSON.stringify([`${secret} x`])],
    ["a name with a slash", JSON.stringify([`${secret}/x`])],
    ["an empty name", '[""]'],
    ["a name of 64 characters", JSON.stringify(["a".repeat(64)])],
    ["more than 1000 names", JSON.stringify(Array.from({ length: 1001 }, (_, i) => `c${i}`))],
  ];
  for (const [name, raw] of cases) {
    await t.step(name, () => {
      const err = assertThrows(() => parseUnreachable(raw), {
        instanceOf: AppError,
        code: "ERR_STATUS_CORRUPT",
      });
      assert(!err.message.includes(secret), err.message);
    });
  }
});

Deno.test("security: parseClusterReport() and parseBinding() refuse what our code never writes, without quoting it", async (t) => {
  const secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0";
  const good = report("east", { restarted: 1, complete: 1 });
  const reports: [string, unknown][] = [
    ["not JSON", `{"cluster":"${secret}`],
    ["an array", [secret]],
    ["an unknown member", { ...good, token: secret }],
    ["a cluster name that is not one", { ...good, cluster: secret + "/x" }],
    ["an unknown state", { ...good, state: "succeeded!" }],
    ["a negative count", { ...good, matched: -1 }],
    ["a fractional count", { ...good, omitted: 1.5 }],
    ["too many Deployments", {
      ...good,
      deployments: Array.from({ length: MAX_REPORTED_DEPLOYMENTS + 1 }, (_, i) => ({
        namespace: "ns",
        name: `d${i}`,
        result: "restarted",
      })),
    }],
    ["a Deployment name with a slash", {
      ...good,
      deployments: [{ namespace: "ns", name: "a/b", result: "restarted" }],
    }],
    ["a reason too long", {
      ...good,
      deployments: [{ namespace: "ns", name: "a", result: "failed", reason: secret.repeat(20) }],
    }],
    ["a duplicate member", JSON.stringify(good).slice(0, -1) + ',"state":"succeeded"}'],
    ["a cluster reason that is not text", { ...good, state: "expired", reason: [secret] }],
    ["a cluster reason too long", { ...good, state: "failed", reason: secret.repeat(20) }],
  ];
  for (const [name, value] of reports) {
    await t.step(`report: ${name}`, () => {
      const raw = typeof value === "string" ? value : JSON.stringify(value);
      const err = assertThrows(() => parseClusterReport(raw), {
        instanceOf: AppError,
        code: "ERR_STATUS_CORRUPT",
      });
      assert(!err.message.includes(secret), err.message);
    });
  }
  const bindings: [string, unknown][] = [
    ["a repository that is not a hash", { ...BINDING, repository: secret }],
    ["a cluster list entry that is not a name", { ...BINDING, clusters: [secret + " x"] }],
    ["a missing time", { ...BINDING, time: undefined }],
  ];
  for (const [name, value] of bindings) {
    await t.step(`binding: ${name}`, () => {
      const err = assertThrows(() => parseBinding(JSON.stringify(value)), {
        code: "ERR_STATUS_CORRUPT",
      });
      assert(!err.message.includes(secret), err.message);
    });
  }
});
