/**
 * The web mode's metric families, created once per process on a registry,
 * with the process metrics and kuberollouttrigger_build_info.
 */

import { registerBuildInfo, registerProcessMetrics } from "../lib/process_metrics.ts";
import {
  type Counter,
  type Gauge,
  type Histogram,
  LATENCY_BUCKETS,
  type Registry,
} from "../lib/metrics.ts";
import { REPORT_REJECTIONS } from "./report_verifier.ts";
import { OVERALL_STATES } from "../shared/event_status.ts";

/** The answers kuberollouttrigger_status_reads_total counts, each exported from start-up. */
export const STATUS_READ_ANSWERS = [...OVERALL_STATES, "not_found", "bad_request", "busy"] as const;
/** One of STATUS_READ_ANSWERS. */
export type StatusReadAnswer = typeof STATUS_READ_ANSWERS[number];

/** Counters and histograms web updates. */
export interface WebMetrics {
  requests: Counter;
  duration: Histogram;
  authDenied: Counter;
  published: Counter;
  publishFailures: Counter;
  tokenReuse: Counter;
  issuerFetches: Counter;
  statusReads: Counter;
  statusWaiters: Gauge;
  reportsIgnored: Counter;
  notifications: Counter;
  notificationsQueued: Gauge;
}

/** Registers web's metrics on `registry`. */
export function createWebMetrics(registry: Registry, version = "unknown"): WebMetrics {
  registerBuildInfo(registry, "kuberollouttrigger_build_info", {
    version,
    mode: "web",
  });
  registerProcessMetrics(registry);
  const statusReads = registry.counter(
    "kuberollouttrigger_status_reads_total",
    "GET /event/<id> answers: the overall state answered, or not_found, bad_request, busy (429).",
  );
  // Alerts on these must see 0, not an absent series, before the first read.
  for (const answer of STATUS_READ_ANSWERS) statusReads.inc({ answer }, 0);
  const publishFailures = registry.counter(
    "kuberollouttrigger_publish_failures_total",
    "Events not delivered: Valkey error or no subscriber.",
  );
  for (const reason of ["error", "no_subscriber"]) publishFailures.inc({ reason }, 0);
  const reportsIgnored = registry.counter(
    "kuberollouttrigger_reports_ignored_total",
    "Cluster reports read and ignored because their cluster did not sign them (REPORT_VERIFY_KEYS), by reason: someone else wrote to Valkey, or a cluster's key is missing or wrong.",
  );
  for (const reason of REPORT_REJECTIONS) reportsIgnored.inc({ reason }, 0);
  const notifications = registry.counter(
    "kuberollouttrigger_notifications_total",
    "Webhook notifications of final event outcomes (NOTIFY_URLS), by result: delivered and failed (given up after its retries) per event and URL; expired per event whose status record was gone before it was notified.",
  );
  for (const result of ["delivered", "failed", "expired"]) notifications.inc({ result }, 0);
  return {
    notifications,
    notificationsQueued: registry.gauge(
      "kuberollouttrigger_notifications_queued",
      "Events waiting to be final and notified (NOTIFY_URLS), as this replica last read the queue.",
    ),
    reportsIgnored,
    publishFailures,
    statusReads,
    statusWaiters: registry.gauge(
      "kuberollouttrigger_status_waiters",
      "GET /event/<id>?wait= requests currently waiting for a change.",
    ),
    requests: registry.counter(
      "kuberollouttrigger_http_requests_total",
      "HTTP requests by route and status code.",
    ),
    duration: registry.histogram(
      "kuberollouttrigger_http_request_duration_seconds",
      "HTTP request handling time by route.",
      LATENCY_BUCKETS,
    ),
    authDenied: registry.counter(
      "kuberollouttrigger_auth_denied_total",
      "Requests denied by authentication or authorization, by reason.",
    ),
    published: registry.counter(
      "kuberollouttrigger_events_published_total",
      "Events published to Valkey and received by at least one worker.",
    ),
    tokenReuse: registry.counter(
      "kuberollouttrigger_token_reuse_total",
      "Requests reusing a token already used with the same body, by outcome: repeat (the first answer again) or in_progress (409, the first was not finished).",
    ),
    issuerFetches: registry.counter(
      "kuberollouttrigger_oidc_issuer_fetches_total",
      "HTTP requests to the token issuer (discovery and keys), by result.",
    ),
  };
}
