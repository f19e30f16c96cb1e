/**
 * summarizeEvent() as tables: one event's outcomes folded into the summary
 * line, the restart counts, the report and the restarted objects.
 */

import { assertEquals } from "../helpers/assert.ts";
import type { DeploymentReport, RestartResult } from "../../shared/event_status.ts";
import {
  type DeploymentOutcome,
  type EventSummary,
  skipOutcomes,
  summarizeEvent,
} from "../../worker/event_summary.ts";
import type { Deployment } from "../../worker/kube/objects.ts";

const EVENT = { id: "e1", image: "ghcr.io/acme/app", tags: ["dev"] };

const object = (name: string): Deployment => ({ metadata: { name, namespace: "ns" } });
const restarted = (name: string, position: number): DeploymentOutcome => ({
  namespace: "ns",
  name,
  position,
  result: "restarted",
  deployment: object(name),
});
const dryRun = (name: string, position: number): DeploymentOutcome => ({
  namespace: "ns",
  name,
  position,
  result: "dry_run",
});
const skipped = (name: string, position: number, reason: string): DeploymentOutcome => ({
  namespace: "ns",
  name,
  position,
  result: "skipped",
  reason,
});
const failed = (name: string, position: number, error: string): DeploymentOutcome => ({
  namespace: "ns",
  name,
  position,
  result: "failed",
  error,
  httpStatus: 403,
});
const counts = (c: Partial<Record<RestartResult, number>>) => ({
  restarted: 0,
  skipped: 0,
  failed: 0,
  dry_run: 0,
  ...c,
});

interface Case {
  name: string;
  outcomes: DeploymentOutcome[];
  summary: Pick<EventSummary, "restarted" | "skipped" | "failed">;
  level: "info" | "error";
  restarts: Record<RestartResult, number>;
  report: DeploymentReport[];
  objects: string[];
}

const CASES: Case[] = [
  {
    name: "no Deployment: empty lists, zero counts, an info line",
    outcomes: [],
    summary: { restarted: [], skipped: [], failed: [] },
    level: "info",
    restarts: counts({}),
    report: [],
    objects: [],
  },
  {
    name: "one of each result: each in its list, counted once, a failure makes the line an error",
    outcomes: [
      skipped("paused", 0, "paused"),
      restarted("a", 1),
      dryRun("b", 2),
      failed("c", 3, "PATCH /apis/apps/v1/namespaces/ns/deployments/c: 403 Forbidden: no"),
    ],
    summary: {
      restarted: ["ns/a"],
      skipped: [
        { deployment: "ns/paused", reason: "paused" },
        { deployment: "ns/b", reason: "dry_run" },
      ],
      failed: [{
        deployment: "ns/c",
        error: "PATCH /apis/apps/v1/namespaces/ns/deployments/c: 403 Forbidden: no",
      }],
    },
    level: "error",
    restarts: counts({ restarted: 1, skipped: 1, dry_run: 1, failed: 1 }),
    report: [
      { namespace: "ns", name: "paused", result: "skipped", reason: "paused" },
      { namespace: "ns", name: "a", result: "restarted" },
      { namespace: "ns", name: "b", result: "dry_run" },
      // The workflow reads the API's status and message, not the request line.
      { namespace: "ns", name: "c", result: "failed", reason: "403 Forbidden: no" },
    ],
    objects: ["a"],
  },
  {
    name: "settled out of plan order: lists and objects as settled, the report in plan order",
    outcomes: [
      skipped("pinned", 0, "digest_pinned"),
      skipped("gone", 3, "deleted"),
      restarted("second", 2),
      restarted("first", 1),
    ],
    summary: {
      restarted: ["ns/second", "ns/first"],
      skipped: [
        { deployment: "ns/pinned", reason: "digest_pinned" },
        { deployment: "ns/gone", reason: "deleted" },
      ],
      failed: [],
    },
    level: "info",
    restarts: counts({ restarted: 2, skipped: 2 }),
    report: [
      { namespace: "ns", name: "pinned", result: "skipped", reason: "digest_pinned" },
      { namespace: "ns", name: "first", result: "restarted" },
      { namespace: "ns", name: "second", result: "restarted" },
      { namespace: "ns", name: "gone", result: "skipped", reason: "deleted" },
    ],
    objects: ["second", "first"],
  },
];

Deno.test("summarizeEvent() folds one outcome per Deployment into summary, counts and report", async (t) => {
  for (const c of CASES) {
    await t.step(c.name, () => {
      const fold = summarizeEvent({
        event: EVENT,
        matched: 7,
        outcomes: c.outcomes,
        durationMs: 1.5,
      });
      assertEquals(fold.summary, {
        event_id: "e1",
        image: "ghcr.io/acme/app",
        tags: ["dev"],
        matched: 7,
        ...c.summary,
        duration_ms: 1.5,
      });
      assertEquals(fold.level, c.level);
      assertEquals(fold.restarts, c.restarts);
      assertEquals(fold.report, c.report);
      assertEquals(fold.restarted.map((d) => d.metadata.name), c.objects);
    });
  }
});

Deno.test("summarizeEvent() keeps the summary's keys in the order the log line shows them", () => {
  const fold = summarizeEvent({ event: EVENT, matched: 0, outcomes: [], durationMs: 0 });
  assertEquals(Object.keys(fold.summary), [
    "event_id",
    "image",
    "tags",
    "matched",
    "restarted",
    "skipped",
    "failed",
    "duration_ms",
  ]);
});

Deno.test("skipOutcomes() places the plan's skips first, in plan order", () => {
  assertEquals(
    skipOutcomes([
      { namespace: "a", name: "x", reason: "paused" },
      { namespace: "b", name: "y", reason: "digest_pinned" },
    ]),
    [
      { namespace: "a", name: "x", position: 0, result: "skipped", reason: "paused" },
      { namespace: "b", name: "y", position: 1, result: "skipped", reason: "digest_pinned" },
    ],
  );
});
