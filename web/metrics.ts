/** The web mode's metric families, created once per process on a registry. */

import { type Counter, type Histogram, LATENCY_BUCKETS, type Registry } from "../shared/metrics.ts";

/** Counters and histograms web updates. */
export interface WebMetrics {
  requests: Counter;
  duration: Histogram;
  authDenied: Counter;
  published: Counter;
  publishFailures: Counter;
  tokenReuse: Counter;
  issuerFetches: Counter;
}

/** Registers web's metrics on `registry`. */
export function createWebMetrics(registry: Registry): WebMetrics {
  return {
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
    publishFailures: registry.counter(
      "kuberollouttrigger_publish_failures_total",
      "Events not delivered: Valkey error or no subscriber.",
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
