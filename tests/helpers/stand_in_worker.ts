/**
 * A stand-in for worker clusters, for tests of the clients of the status
 * route (our Action, `deno task trigger --wait`): it subscribes to the event
 * channel (so web's POST finds a subscriber), keeps each named cluster's
 * heartbeat live, and on each event lets the test write cluster reports in the
 * exact shape the real worker writes (shared/event_status.ts ClusterReport,
 * checked with parseClusterReport before it is stored): HSET on the event's
 * status key, then PUBLISH of the id on the status channel. The end-to-end
 * tests with real workers prove the worker's side; this proves the clients'.
 */

import { createLogger } from "../../lib/log.ts";
import {
  type ClusterReport,
  CLUSTERS_KEY,
  clusterStateOf,
  type DeploymentReport,
  emptyCounts,
  parseClusterReport,
  reportField,
  statusChannel,
  statusKey,
} from "../../shared/event_status.ts";
import { createValkeyClient } from "../../shared/valkey_client.ts";
import { eventually } from "./eventually.ts";
import { connectValkey, testSettings, type TestValkey } from "./valkey.ts";

/** A cluster report from its Deployments: counts and state computed as a worker does. */
export function clusterReport(
  cluster: string,
  deployments: DeploymentReport[],
  options: { omitted?: number; omittedRestarted?: number } = {},
): ClusterReport {
  const counts = emptyCounts();
  for (const d of deployments) {
    if (d.result === "restarted") counts.restarted++;
    else if (d.result === "skipped") counts.skipped++;
    else if (d.result === "failed") counts.failed++;
    else counts.dry_run++;
    const rollout = d.rollout?.state;
    if (rollout === "complete") counts.complete++;
    else if (rollout === "progressing") counts.progressing++;
    else if (rollout === "failed" || rollout === "timed_out") counts.rollout_failed++;
  }
  // Deployments only counted: restarted and complete (the report names failures first).
  counts.restarted += options.omittedRestarted ?? 0;
  counts.complete += options.omittedRestarted ?? 0;
  const omitted = options.omitted ?? 0;
  return {
    cluster,
    state: clusterStateOf(counts, deployments.length + omitted),
    matched: deployments.length + omitted,
    counts,
    deployments,
    omitted,
    updated: new Date().toISOString(),
  };
}

/** A published event, as the stand-in received it. */
export interface ReceivedEvent {
  id: string;
  image: string;
  tags: string[];
}

/** Writes one cluster's report for an event and announces it. */
export type WriteReport = (report: ClusterReport) => Promise<void>;

/** A running stand-in. */
export interface StandInWorker {
  events: ReceivedEvent[];
  /** Resolves with the nth event received (1-based), waiting up to timeoutMs. */
  event(n?: number, timeoutMs?: number): Promise<ReceivedEvent>;
  /** Writes a report for an event outside onEvent. */
  write(eventId: string, report: ClusterReport): Promise<void>;
  stop(): Promise<void>;
}

/** Options for startStandInWorker. */
export interface StandInOptions {
  valkey: TestValkey;
  /** VALKEY_CHANNEL of the web under test. */
  channel: string;
  /** Clusters whose heartbeat is kept live. */
  clusters: string[];
  /** Called for each event received; reports it writes reach web's waiters at once. */
  onEvent?: (event: ReceivedEvent, write: WriteReport) => Promise<void> | void;
}

/** Subscribes, heartbeats, and answers events with the test's reports. */
export async function startStandInWorker(options: StandInOptions): Promise<StandInWorker> {
  const client = await connectValkey(options.valkey, { name: "krt-test-stand-in" });
  const events: ReceivedEvent[] = [];
  const pending: Promise<void>[] = [];
  const write = async (eventId: string, report: ClusterReport) => {
    const raw = JSON.stringify(report);
    parseClusterReport(raw); // the exact shape, or the test is wrong
    // Commands fail at once while the connection is down (a test restarted Valkey):
    // tried again until it is back, as the worker's report writer does.
    await eventually(
      `the report of ${report.cluster} for ${eventId} written`,
      async () => {
        await client.call("HSET", statusKey(eventId), reportField(report.cluster), raw);
        await client.call("PUBLISH", statusChannel(options.channel), eventId);
        return true;
      },
      10_000,
      50,
    );
  };
  const beat = async () => {
    const now = Date.now();
    for (const cluster of options.clusters) await client.call("ZADD", CLUSTERS_KEY, now, cluster);
  };
  await beat();
  const heartbeat = setInterval(() => beat().catch(() => {}), 5_000);
  const subscriber = createValkeyClient(testSettings(options.valkey), {
    name: "krt-test-stand-in-subscriber",
    logger: createLogger({ level: "error", write: () => {} }),
    subscription: {
      channels: [options.channel],
      onMessage: (_channel, message) => {
        let event: ReceivedEvent;
        try {
          event = JSON.parse(message) as ReceivedEvent;
        } catch {
          // Thrown here it would end the subscriber's connection; the test sees no event instead.
          console.error(`stand-in worker: a message that is not JSON (${message.length} bytes)`);
          return;
        }
        events.push(event);
        if (options.onEvent) {
          pending.push(
            Promise.resolve(options.onEvent(event, (report) => write(event.id, report))).catch(
              (err) => console.error(`stand-in worker: onEvent failed: ${err}`),
            ),
          );
        }
      },
    },
  });
  // The subscriber counts as connected once the server confirmed the subscription.
  try {
    await eventually("the stand-in worker's subscription", () => subscriber.connected, 10_000, 10);
  } catch (err) {
    clearInterval(heartbeat);
    subscriber.disconnect();
    client.disconnect();
    throw err;
  }
  return {
    events,
    async event(n = 1, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (events.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} events, got ${events.length}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return events[n - 1];
    },
    write,
    async stop() {
      clearInterval(heartbeat);
      await Promise.allSettled(pending);
      subscriber.disconnect();
      client.disconnect();
    },
  };
}
