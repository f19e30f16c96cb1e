/**
 * The web mode's HTTP handler: routing to the event, status, probe and
 * metrics routes, and the one wrapper around them that maps errors to answers
 * and writes the request's log line and metrics. Everything in the request is
 * untrusted; no request can make it answer 5xx (those mean our side or a
 * dependency failed). The token and request headers are never logged.
 */

import { AppError, type ErrorCode } from "../shared/errors.ts";
import { AuthError, Reason } from "./reasons.ts";
import type { LogFields, Logger } from "../lib/log.ts";
import type { Registry } from "../lib/metrics.ts";
import { probeRoutes } from "../lib/probes.ts";
import { json } from "../lib/json_response.ts";
import type { EventSigner } from "./event_signer.ts";
import { createEventRoute } from "./event_route.ts";
import type { WebMetrics } from "./metrics.ts";
import type { TokenVerifier } from "./oidc.ts";
import type { Authorizer } from "./policy.ts";
import type { Publisher } from "./publisher.ts";
import type { ReplayGuard } from "./replay.ts";
import type { RepositoryRules } from "../config/repository_rules.ts";
import { createAuthenticate } from "./request_steps.ts";
import { type BodyReader, createBodyReader } from "./request_body.ts";
import { errorResponse } from "./responses.ts";
import type { RequestInfo, Route } from "./route.ts";
import { createStatusRoute, STATUS_PATH } from "./status_route.ts";
import type { StatusReader } from "./status_store.ts";
import type { StatusWaiters } from "./status_waiters.ts";

export type { RequestInfo, Route } from "./route.ts";

/** Paths that accept an event; /v1/event is the versioned alias. */
export const EVENT_PATHS = ["/event", "/v1/event"];
/** The metrics label of every status path (one series, not one per event id). */
const STATUS_ROUTE_LABEL = "/event/:id";

/** Everything the handler uses, passed in so tests can build it alone. */
export interface HandlerDeps {
  verify: TokenVerifier;
  authorize: Authorizer;
  publisher: Publisher;
  replay: ReplayGuard;
  statusReader: StatusReader;
  statusWaiters: StatusWaiters;
  /** How long after publishing a live cluster may take to report. */
  statusReportTimeoutMs: number;
  prefixes: readonly string[];
  logger: Logger;
  metrics: WebMetrics;
  registry: Registry;
  /** Readiness checks by name; all must pass for /readyz to answer 200. */
  readiness: Record<string, () => Promise<boolean>>;
  now?: () => Date;
  newId?: () => string;
  /** Aborted at shutdown: waiting status requests answer at once, new requests 503. */
  signal?: AbortSignal;
  /** More routes by path (dev mode adds its token endpoint here). */
  extraRoutes?: Record<string, Route>;
  /** Signs published events and status bindings (EVENT_SIGNING_KEY). */
  signer?: EventSigner;
  /** With signed reports: the clusters every event waits for, signed into each binding. */
  signedClusters?: readonly string[];
  /** REPOSITORY_RULES: which repository may name which images. */
  rules?: RepositoryRules;
  /** NOTIFY_URLS is set: events are queued for notifications. */
  notifying?: boolean;
  /** Reads event bodies; default: MAX_BODY_BYTES within BODY_TIMEOUT_MS. */
  bodies?: BodyReader;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
// RFC 9110 §7.2: Host is uri-host [":" port]. Deno builds req.url from it, so
// "x/metrics?" would move the path the request line asked for.
const HOST = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{0,5}))?$/;
const QUIET_ROUTES = new Set(["/healthz", "/readyz", "/metrics"]);

function isValidHost(host: string | null): boolean {
  // Absent or empty (HTTP/1.0, or no authority): Deno uses the listen address.
  if (host === null || host === "") return true;
  const m = HOST.exec(host);
  return m !== null && (m[1] === undefined || Number(m[1]) <= 65535);
}

interface Entry {
  method: "GET" | "POST";
  route: Route;
  label: string;
}

/** The URL the request names, or undefined when its Host makes none. */
function requestUrl(req: Request): URL | undefined {
  try {
    if (isValidHost(req.headers.get("host"))) return new URL(req.url);
  } catch {
    // No URL can be made of what the client sent: answered as 400.
  }
  return undefined;
}

/** Records an error's reason and code in the log line and metrics. */
function noteError(err: unknown, log: LogFields, metrics: WebMetrics): void {
  if (err instanceof AuthError) {
    metrics.authDenied.inc({ reason: err.reason });
    Object.assign(log, { reason: err.reason, detail: err.message });
  } else if (err instanceof AppError) {
    Object.assign(log, { code: err.code, detail: err.message });
    if (err.code === "ERR_PUBLISH_FAILED") {
      metrics.publishFailures.inc({ reason: "error" });
    } else if (err.code === "ERR_REPLAY_IN_PROGRESS") {
      // Nothing failed: the first request holds the token and may still deliver.
      log.reason = Reason.replay_in_progress;
      metrics.tokenReuse.inc({ outcome: "in_progress" });
    }
  } else {
    Object.assign(log, {
      code: "ERR_INTERNAL" satisfies ErrorCode,
      detail: String(err).slice(0, 300),
    });
  }
}

/** Creates the request handler for Deno.serve. */
export function createHandler(
  deps: HandlerDeps,
): (req: Request, info: RequestInfo) => Promise<Response> {
  const now = deps.now ?? (() => new Date());
  const newId = deps.newId ?? (() => crypto.randomUUID());
  const authenticate = createAuthenticate(deps.verify, deps.authorize);
  const bodies = deps.bodies ?? createBodyReader();
  const eventDeps = { ...deps, authenticate, now, newId, bodies };

  const routes = new Map<string, Entry>();
  const probes = probeRoutes({ readiness: deps.readiness, registry: deps.registry });
  for (const [path, probe] of Object.entries(probes)) {
    routes.set(path, { method: "GET", route: probe, label: path });
  }
  for (const path of EVENT_PATHS) {
    routes.set(path, { method: "POST", route: createEventRoute(eventDeps, path), label: path });
  }
  for (const [path, route] of Object.entries(deps.extraRoutes ?? {})) {
    routes.set(path, { method: "POST", route, label: path });
  }
  const status: Entry = {
    method: "GET",
    label: STATUS_ROUTE_LABEL,
    route: createStatusRoute({
      authenticate,
      reader: deps.statusReader,
      waiters: deps.statusWaiters,
      metrics: deps.metrics,
      reportTimeoutMs: deps.statusReportTimeoutMs,
      now: () => now().getTime(),
      signal: deps.signal,
    }),
  };
  const match = (url: URL) =>
    routes.get(url.pathname) ?? (STATUS_PATH.test(url.pathname) ? status : undefined);

  return async (req, info) => {
    const started = performance.now();
    const incoming = req.headers.get("x-request-id");
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : newId();
    const url = requestUrl(req);
    const entry = url ? match(url) : undefined;
    const log: LogFields = {
      request_id: requestId,
      method: req.method,
      path: url ? url.pathname.slice(0, 200) : undefined,
      remote_addr: info.remoteAddr.hostname,
    };
    let response: Response;
    try {
      if (deps.signal?.aborted) {
        // Shutting down: web/server.ts closes the listener once the requests in progress are
        // done; one begun now could be cut off mid-body. Another replica answers the retry.
        log.reason = Reason.shutting_down;
        response = json(503, { error: "web is shutting down; retry" }, { "retry-after": "1" });
      } else if (!url) {
        log.reason = Reason.bad_host;
        response = json(400, { error: "Host header is not a valid host[:port]" });
      } else if (!entry) response = json(404, { error: "not found" });
      else if (req.method !== entry.method && !(entry.method === "GET" && req.method === "HEAD")) {
        response = json(405, { error: "method not allowed" }, { allow: entry.method });
      } else response = await entry.route(req, info, log);
    } catch (err) {
      response = errorResponse(err);
      noteError(err, log, deps.metrics);
    }
    response.headers.set("x-request-id", requestId);
    const label = entry?.label ?? "unmatched";
    const seconds = (performance.now() - started) / 1000;
    deps.metrics.requests.inc({ route: label, code: String(response.status) });
    deps.metrics.duration.observe(seconds, { route: label });
    const fields = { ...log, status: response.status, duration_ms: Math.round(seconds * 1e4) / 10 };
    if (log.reason === Reason.shutting_down || log.reason === Reason.client_gone) {
      // Expected: a replica stopping, a client that stopped waiting; nothing failed.
      deps.logger.info("request", fields);
    } else if (QUIET_ROUTES.has(label)) {
      if (response.status >= 400) deps.logger.warn("request", fields);
      else deps.logger.debug("request", fields);
    } else {
      const level = response.status >= 500 ? "error" : response.status >= 400 ? "warn" : "info";
      deps.logger[level]("request", fields);
    }
    return response;
  };
}
