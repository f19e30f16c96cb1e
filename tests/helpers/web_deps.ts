/**
 * In-memory stand-ins for web's Valkey-backed pieces (publisher, status
 * record, replay guard), for in-process handler tests. They keep the record
 * the way the real publish script does (binding, the unreachable clusters and
 * one report per cluster, nothing at all when no cluster is known); the real
 * script and reader are proven on a real Valkey in tests/integration/web/ and
 * tests/e2e/, built by valkeyWebParts() below.
 */

import type { ClusterReport, StatusBinding } from "../../shared/event_status.ts";
import type { Logger } from "../../lib/log.ts";
import type { ValkeyCommands } from "../../shared/valkey_client.ts";
import {
  createPublisher,
  fillAnswer,
  type Published,
  type Publisher,
  type PublishInput,
} from "../../web/publisher.ts";
import { createReplayGuard, type ReplayGuard } from "../../web/replay.ts";
import { createStatusReader, type StatusReader } from "../../web/status_store.ts";
import { createStatusWaiters, type StatusWaiters } from "../../web/status_waiters.ts";

/** One event's record as the fake keeps it. */
export interface MemoryRecord {
  binding: StatusBinding;
  reports: Map<string, ClusterReport>;
  /** Known clusters that were not live at publishing. */
  unreachable: string[];
}

/** The fakes and what they saw. */
export interface MemoryStatus {
  publisher: Publisher;
  statusReader: StatusReader;
  statusWaiters: StatusWaiters;
  records: Map<string, MemoryRecord>;
  published: PublishInput[];
  /** Stores a cluster report and wakes waiters, as a worker would. */
  report(id: string, report: ClusterReport): void;
}

/** Options for memoryStatus. */
export interface MemoryStatusOptions {
  /** The known clusters every event is for; none: 503, nothing stored. */
  clusters?: string[];
  /** Which of `clusters` were not live at publish time. */
  unreachable?: string[];
  /** Channel subscribers (observers, older workers); they decide nothing. */
  subscribers?: number;
  maxWaiters?: number;
  publish?: (input: PublishInput) => Promise<Published>;
}

/** Builds the in-memory publisher, reader and (real) waiters. */
export function memoryStatus(options: MemoryStatusOptions = {}): MemoryStatus {
  const records = new Map<string, MemoryRecord>();
  const published: PublishInput[] = [];
  const statusWaiters = createStatusWaiters({ max: options.maxWaiters ?? 1000 });
  const clusters = [...(options.clusters ?? ["test"])].sort();
  const unreachable = [...(options.unreachable ?? [])].sort();
  const publisher: Publisher = {
    publish: options.publish ?? ((input) => {
      published.push(input);
      const subscribers = options.subscribers ?? 1;
      // As the script: with no known cluster nothing is written and no answer stored.
      if (clusters.length === 0) return Promise.resolve({ subscribers, clusters, unreachable: [] });
      records.set(input.eventId, {
        binding: { ...input.binding, clusters },
        reports: new Map(),
        unreachable,
      });
      const answer = input.replay && fillAnswer(input.replay.answer, subscribers, clusters);
      return Promise.resolve({ subscribers, clusters, unreachable, ...(answer ? { answer } : {}) });
    }),
    ping: () => Promise.resolve(true),
  };
  const statusReader: StatusReader = {
    read: (id) => {
      const record = records.get(id);
      return Promise.resolve(
        record && {
          binding: record.binding,
          reports: new Map(record.reports),
          unreadable: [],
          unreachable: record.unreachable,
        },
      );
    },
  };
  return {
    publisher,
    statusReader,
    statusWaiters,
    records,
    published,
    report(id, report) {
      records.get(id)?.reports.set(report.cluster, report);
      statusWaiters.notify(id);
    },
  };
}

/** A replay guard that lets every request through as a first use. */
export function permissiveReplay(): ReplayGuard {
  return {
    claim: () => ({ key: "k", bodyHash: "h", ttlMs: 1000 }),
    async once(_claim, attempt) {
      const tried = await attempt();
      if (tried.kind !== "done") throw new Error("the permissive guard saw a taken claim");
      return { kind: "first", value: tried.value };
    },
  };
}

/** Web's Valkey-backed parts on one real connection, built as web/server.ts builds them. */
export interface ValkeyWebParts {
  publisher: Publisher;
  replay: ReplayGuard;
  statusReader: StatusReader;
}

/**
 * The real publisher, replay guard and status reader on `client`, so
 * in-process tests prove the user-visible behaviour (one message per event,
 * the first answer to a retry, a different body refused) against a real
 * server. The one place to follow when their constructors change.
 */
export function valkeyWebParts(
  client: ValkeyCommands,
  options: {
    channel: string;
    logger: Logger;
    replayWaitMs?: number;
    /** SPUBLISH for sharded PubSub in a cluster; default PUBLISH. */
    publishCommand?: "PUBLISH" | "SPUBLISH";
    /** CATCH_UP_WINDOW; default 1 h, as the setting's. */
    catchUpWindowMs?: number;
    /** CLUSTER_FORGET_AFTER; default 168 h, as the setting's. */
    forgetAfterMs?: number;
    /** CLUSTERS: the clusters every event is for instead of the registered ones. */
    clusters?: readonly string[];
    /** The publisher's clock (ms). */
    now?: () => number;
  },
): ValkeyWebParts {
  return {
    publisher: createPublisher({
      client,
      channel: options.channel,
      publishCommand: options.publishCommand,
      statusTtlMs: 60_000,
      catchUpWindowMs: options.catchUpWindowMs ?? 3_600_000,
      forgetAfterMs: options.forgetAfterMs ?? 168 * 3_600_000,
      clusters: options.clusters,
      now: options.now,
    }),
    replay: createReplayGuard({
      clockToleranceMs: 15_000,
      maxTokenAgeMs: 600_000,
      waitMs: options.replayWaitMs,
    }),
    statusReader: createStatusReader(client, options.logger),
  };
}
