/**
 * The worker's health server: /healthz, /readyz and /metrics (lib/probes.ts
 * answers them), GET or HEAD only, everything else 404. It listens on its own
 * address, apart from anything that handles events; requests carry nothing
 * the worker trusts or reads beyond the method and the path.
 */

import type { Logger } from "../lib/log.ts";
import { json } from "../lib/json_response.ts";

/** A probe's answer by path, as probeRoutes() builds them. */
export type Probes = Record<string, () => Promise<Response>>;

/** Routes one request to its probe: 404 for another path, 405 for another method. */
export function routeProbes(probes: Probes): (req: Request) => Response | Promise<Response> {
  return (req) => {
    const probe = probes[new URL(req.url).pathname];
    if (!probe) return json(404, { error: "not found" });
    if (req.method !== "GET" && req.method !== "HEAD") {
      return json(405, { error: "method not allowed" }, { allow: "GET" });
    }
    return probe();
  };
}

/** Options for serveHealth. */
export interface HealthServerOptions {
  addr: { host: string; port: number };
  probes: Probes;
  logger: Logger;
  /** Stops the server. */
  signal: AbortSignal;
  onListen?: (addr: { hostname: string; port: number }) => void;
}

/** Starts the health server; it stops when `signal` aborts (await `finished`). */
export function serveHealth(options: HealthServerOptions): Deno.HttpServer {
  return Deno.serve({
    hostname: options.addr.host,
    port: options.addr.port,
    signal: options.signal,
    onListen: (addr) => {
      options.logger.info("worker health server listening", {
        addr: `${addr.hostname}:${addr.port}`,
      });
      options.onListen?.(addr);
    },
  }, routeProbes(options.probes));
}
