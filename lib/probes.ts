/**
 * The probe and metrics endpoints both modes serve: /healthz (the process
 * answers), /readyz (every named check passes) and /metrics (Prometheus text).
 */

import { json } from "./json_response.ts";
import type { Registry } from "./metrics.ts";

/** Options for probeRoutes. */
export interface ProbeOptions {
  /** Readiness checks by name; all must pass for /readyz to answer 200. */
  readiness: Record<string, () => Promise<boolean> | boolean>;
  registry: Registry;
  /** Runs before /metrics renders, to refresh gauges. */
  beforeScrape?: () => void;
}

/** GET handlers for /healthz, /readyz and /metrics. */
export function probeRoutes(options: ProbeOptions): Record<string, () => Promise<Response>> {
  return {
    "/healthz": () => Promise.resolve(json(200, { status: "ok" })),
    "/readyz": async () => {
      const names = Object.keys(options.readiness);
      const results = await Promise.all(
        names.map((n) => Promise.resolve().then(() => options.readiness[n]()).catch(() => false)),
      );
      const checks = Object.fromEntries(names.map((n, i) => [n, results[i] ? "ok" : "failing"]));
      const ok = results.every(Boolean);
      return json(ok ? 200 : 503, { status: ok ? "ready" : "not ready", checks });
    },
    "/metrics": () => {
      options.beforeScrape?.();
      return Promise.resolve(
        new Response(options.registry.render(), {
          headers: { "content-type": "text/plain; version=0.0.4; charset=utf-8" },
        }),
      );
    },
  };
}
