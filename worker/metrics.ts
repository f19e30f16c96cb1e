/**
 * The worker's metric families, created once per process on a registry, with
 * the process metrics and kuberollouttrigger_build_info.
 */

import { registerBuildInfo, registerProcessMetrics } from "../lib/process_metrics.ts";
import { DROP_REASONS } from "./event_verifier.ts";
import type { Inventory } from "./inventory/inventory.ts";
import {
  type Counter,
  type Gauge,
  type Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "../lib/metrics.ts";

/** Counters, gauges and histograms the worker updates. */
export interface WorkerMetrics {
  events: Counter;
  restarts: Counter;
  rollouts: Counter;
  reportWrites: Counter;
  kubeEvents: Counter;
  eventDuration: Histogram;
  streamReading: Gauge;
  streamFailures: Counter;
  streamClaimed: Counter;
  kubeRequests: Counter;
  relists: Counter;
  watchErrors: Counter;
  watchIdle: Counter;
  malformedEvents: Counter;
  inventorySize: Gauge;
  inventoryCurrent: Gauge;
  inventoryUnavailable: Gauge;
  droppedMessages: Counter;
}

/** Every result label of events_total, exported at 0 from start-up. */
export const EVENT_RESULTS = ["handled", "invalid", "expired", "other_replica"] as const;
/** Every result label of restarts_total, exported at 0 from start-up. */
export const RESTART_RESULTS = ["restarted", "skipped", "failed", "dry_run"] as const;
/** Every final rollout state of rollouts_total, exported at 0 from start-up. */
export const ROLLOUT_FINAL_STATES = ["complete", "failed", "timed_out"] as const;

/** Registers the worker's metrics on `registry`. */
export function createWorkerMetrics(registry: Registry, version = "unknown"): WorkerMetrics {
  registerBuildInfo(registry, "kuberollouttrigger_build_info", {
    version,
    mode: "worker",
  });
  registerProcessMetrics(registry);
  const metrics = createFamilies(registry);
  // Alerts on these must see a 0, not an absent series, before the first event.
  for (const result of RESTART_RESULTS) metrics.restarts.inc({ result }, 0);
  for (const state of ROLLOUT_FINAL_STATES) metrics.rollouts.inc({ state }, 0);
  for (const result of ["written", "failed", "no_record", "abandoned"]) {
    metrics.reportWrites.inc({ result }, 0);
  }
  for (const result of ["created", "failed"]) metrics.kubeEvents.inc({ result }, 0);
  metrics.streamFailures.inc({}, 0);
  metrics.streamClaimed.inc({}, 0);
  metrics.streamReading.set(0);
  for (const result of EVENT_RESULTS) metrics.events.inc({ result }, 0);
  for (const reason of DROP_REASONS) metrics.droppedMessages.inc({ reason }, 0);
  return metrics;
}

/** Exports the per-scope series that alerts use at 0 for each scope the inventory follows. */
export function exportScopes(metrics: WorkerMetrics, scopes: string[]): void {
  for (const scope of scopes) {
    metrics.watchErrors.inc({ scope }, 0);
    metrics.malformedEvents.inc({ scope }, 0);
    metrics.inventoryUnavailable.set(0, { scope });
  }
}

/** Sets inventory_scope_unavailable per scope from the inventory (1 while it cannot be listed); call at scrape. */
export function exportScopeAvailability(
  metrics: WorkerMetrics,
  inventory: Pick<Inventory, "scopes" | "unavailable">,
): void {
  const unavailable = new Set(inventory.unavailable().map((u) => u.scope));
  for (const scope of Object.keys(inventory.scopes())) {
    metrics.inventoryUnavailable.set(unavailable.has(scope) ? 1 : 0, { scope });
  }
}

function createFamilies(registry: Registry): WorkerMetrics {
  return {
    events: registry.counter(
      "kuberollouttrigger_worker_events_total",
      "Events by result: handled, invalid (not a valid message, or trimmed), expired (older than CATCH_UP_WINDOW) or other_replica.",
    ),
    restarts: registry.counter(
      "kuberollouttrigger_worker_restarts_total",
      "Deployments per outcome: restarted, skipped, failed or dry_run.",
    ),
    rollouts: registry.counter(
      "kuberollouttrigger_worker_rollouts_total",
      "Rollouts of restarted Deployments by final state: complete, failed (ProgressDeadlineExceeded, deleted) or timed_out (ROLLOUT_TIMEOUT).",
    ),
    reportWrites: registry.counter(
      "kuberollouttrigger_worker_report_writes_total",
      "Cluster report writes to the status record by result: written, failed (retried), no_record (expired or not web's) or abandoned.",
    ),
    kubeEvents: registry.counter(
      "kuberollouttrigger_worker_kube_events_total",
      "RolloutTriggered Kubernetes Events by result: created or failed (the restart stands either way).",
    ),
    eventDuration: registry.histogram(
      "kuberollouttrigger_worker_event_duration_seconds",
      "Time from receiving an event to its last patch.",
      LATENCY_BUCKETS,
    ),
    streamReading: registry.gauge(
      "kuberollouttrigger_worker_stream_reading",
      "1 while the last read of the event stream succeeded.",
    ),
    streamFailures: registry.counter(
      "kuberollouttrigger_worker_stream_failures_total",
      "Failed reads, take-overs or acknowledgements on the event stream (retried; nothing is lost).",
    ),
    streamClaimed: registry.counter(
      "kuberollouttrigger_worker_stream_claimed_total",
      "Events taken over from a replica that left them unacknowledged (it died or stalled).",
    ),
    kubeRequests: registry.counter(
      "kuberollouttrigger_worker_kube_requests_total",
      "Kubernetes API requests by verb.",
    ),
    relists: registry.counter(
      "kuberollouttrigger_worker_inventory_relists_total",
      "Full lists of Deployments, by scope.",
    ),
    watchErrors: registry.counter(
      "kuberollouttrigger_worker_watch_errors_total",
      "Failed list/watch attempts, by scope.",
    ),
    watchIdle: registry.counter(
      "kuberollouttrigger_worker_watch_idle_total",
      "Watches aborted and resumed because no event or bookmark arrived within the idle deadline, by scope.",
    ),
    malformedEvents: registry.counter(
      "kuberollouttrigger_worker_watch_malformed_total",
      "Watch events or list items that were not valid JSON or not shaped as expected (each causes a relist), by scope.",
    ),
    inventoryCurrent: registry.gauge(
      "kuberollouttrigger_worker_inventory_current",
      "1 while the scope's inventory is current (listed, not relisting, heard from within the idle deadline).",
    ),
    inventoryUnavailable: registry.gauge(
      "kuberollouttrigger_worker_inventory_scope_unavailable",
      "1 while the scope cannot be listed: never listed, and its latest list failed (events are matched without it).",
    ),
    inventorySize: registry.gauge(
      "kuberollouttrigger_worker_inventory_deployments",
      "Deployments in the inventory.",
    ),
    droppedMessages: registry.counter(
      "kuberollouttrigger_worker_dropped_messages_total",
      "Channel messages dropped by the signature checks (EVENT_VERIFY_KEYS), by reason: unsigned, malformed, unknown_key, bad_signature, expired, future or replayed.",
    ),
  };
}
