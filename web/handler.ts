/**
 * The web mode's HTTP handler: routing, the POST /event pipeline (method →
 * token → authorization → content type and coding → bounded body → event →
 * publish) and the probe and metrics endpoints. Everything in the request is
 * untrusted; the token is verified before the body is read, and no request can
 * make it answer 5xx (those mean our side or a dependency failed). One JSON log
 * line per request; the token and request headers are never logged.
 */

import { AppError, AuthError } from "../shared/errors.ts";
import { encodeEventMessage, type EventMessage, parseEventRequest } from "../shared/event.ts";
import type { LogFields, Logger } from "../shared/log.ts";
import type { Registry } from "../shared/metrics.ts";
import type { WebMetrics } from "./metrics.ts";
import type { GitHubClaims, TokenVerifier } from "./oidc.ts";
import type { Authorizer } from "./policy.ts";
import type { Publisher } from "./publisher.ts";
import type { ReplayGuard, TokenUse } from "./replay.ts";
import { json, probeRoutes } from "../shared/probes.ts";
import { errorResponse } from "./responses.ts";

/** Largest accepted POST body: an image and 32 tags fit several times over. */
export const MAX_BODY_BYTES = 8 * 1024;
/** Longest time a client may take to send the body once the token is verified. */
export const BODY_TIMEOUT_MS = 10_000;
/** Paths that accept an event; /v1/event is the versioned alias. */
export const EVENT_PATHS = ["/event", "/v1/event"];

/** Connection facts Deno.serve passes along with each request. */
export interface RequestInfo {
  remoteAddr: { hostname: string; port: number };
}

/** A request handler for one route. */
export type Route = (req: Request, info: RequestInfo, log: LogFields) => Promise<Response>;

/** Everything the handler uses, passed in so tests can build it alone. */
export interface HandlerDeps {
  verify: TokenVerifier;
  authorize: Authorizer;
  publisher: Publisher;
  replay: ReplayGuard;
  prefixes: readonly string[];
  logger: Logger;
  metrics: WebMetrics;
  registry: Registry;
  /** Readiness checks by name; all must pass for /readyz to answer 200. */
  readiness: Record<string, () => Promise<boolean>>;
  now?: () => Date;
  newId?: () => string;
  /** More routes by path (dev mode adds its token endpoint here). */
  extraRoutes?: Record<string, Route>;
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
const BEARER = /^bearer +([^\s,]+)$/i;
// RFC 9110 §7.2: Host is uri-host [":" port]. Deno builds req.url from it, so
// "x/metrics?" would move the path the request line asked for.
const HOST = /^(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{0,5}))?$/;

function isValidHost(host: string | null): boolean {
  // Absent or empty (HTTP/1.0, or no authority): Deno uses the listen address.
  if (host === null || host === "") return true;
  const m = HOST.exec(host);
  return m !== null && (m[1] === undefined || Number(m[1]) <= 65535);
}

function isJsonContentType(value: string | null): boolean {
  if (!value) return false;
  const [type, ...params] = value.split(";").map((p) => p.trim().toLowerCase());
  if (type !== "application/json") return false;
  return params.every((p) => p === "" || /^charset="?utf-8"?$/.test(p));
}

/** Why a body could not be had, or its text. */
type BodyResult = string | "too_large" | "bad_encoding" | "too_slow" | "cut_short";

/** What is wrong with the request's codings, if anything: web reads the body only as sent (RFC 9110 §8.4, RFC 9112 §6.1). */
function codingProblem(req: Request): string | undefined {
  const content = req.headers.get("content-encoding");
  // Security: a compressed body would otherwise be parsed (and published) as plain.
  if (content !== null && content.trim().toLowerCase() !== "identity") {
    return "content encoding must be identity";
  }
  // Deno decodes chunked framing only; any other transfer coding reaches us raw.
  const transfer = req.headers.get("transfer-encoding");
  if (transfer !== null && transfer.trim().toLowerCase() !== "chunked") {
    return "transfer encoding must be chunked or absent";
  }
  return undefined;
}

async function readBody(req: Request): Promise<BodyResult> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) return "too_large";
  const reader = req.body?.getReader();
  if (!reader) return "";
  const buffer = new Uint8Array(MAX_BODY_BYTES);
  let size = 0;
  // Security: a trickled body would otherwise hold the request open forever.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"too_slow">((resolve) =>
    timer = setTimeout(() => resolve("too_slow"), BODY_TIMEOUT_MS)
  );
  try {
    for (;;) {
      // A client that closes before sending all it announced (Content-Length or
      // chunked) makes read() reject: the request is incomplete, not our fault.
      const chunk = await Promise.race([
        reader.read().catch(() => "cut_short" as const),
        deadline,
      ]);
      if (chunk === "cut_short") return "cut_short";
      if (chunk === "too_slow") {
        await reader.cancel().catch(() => {});
        return "too_slow";
      }
      if (chunk.done) break;
      if (size + chunk.value.length > MAX_BODY_BYTES) {
        await reader.cancel().catch(() => {});
        return "too_large";
      }
      buffer.set(chunk.value, size);
      size += chunk.value.length;
    }
  } finally {
    clearTimeout(timer);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(
      buffer.subarray(0, size),
    );
  } catch {
    return "bad_encoding";
  }
}

function auditFields(claims: GitHubClaims): LogFields {
  const pick = (v: unknown) => typeof v === "string" ? v.slice(0, 300) : undefined;
  return {
    repository: pick(claims.repository),
    repository_owner: pick(claims.repository_owner),
    ref: pick(claims.ref),
    event_name: pick(claims.event_name),
    workflow_ref: pick(claims.workflow_ref),
    actor: pick(claims.actor),
    token_jti: pick(claims.jti),
  };
}

/** Creates the request handler for Deno.serve. */
export function createHandler(
  deps: HandlerDeps,
): (req: Request, info: RequestInfo) => Promise<Response> {
  const now = deps.now ?? (() => new Date());
  const newId = deps.newId ?? (() => crypto.randomUUID());

  const postEvent: Route = async (req, _info, log) => {
    const header = req.headers.get("authorization");
    if (header === null) throw new AuthError("missing_token", "no Authorization header");
    const match = BEARER.exec(header);
    // Two Authorization headers arrive joined by ", " and fail this match.
    if (!match) {
      throw new AuthError("malformed_authorization", "Authorization is not one Bearer token");
    }
    const claims = await deps.verify(match[1]);
    Object.assign(log, auditFields(claims));
    deps.authorize(claims);

    if (!isJsonContentType(req.headers.get("content-type"))) {
      return json(415, { error: "content type must be application/json" });
    }
    const coding = codingProblem(req);
    if (coding) return json(415, { error: coding });
    const body = await readBody(req);
    if (body === "too_large") return json(413, { error: `body exceeds ${MAX_BODY_BYTES} bytes` });
    if (body === "too_slow") return json(408, { error: "request body was not received in time" });
    if (body === "cut_short") {
      log.reason = "body_incomplete";
      return json(400, { error: "request body ended before it was complete" });
    }
    if (body === "bad_encoding") throw new AppError("ERR_EVENT_INVALID", "body is not valid UTF-8");
    const event = parseEventRequest(body, deps.prefixes);
    const use: TokenUse = {
      issuer: String(claims.iss),
      jti: claims.jti,
      exp: claims.exp,
      iat: claims.iat,
      body,
    };
    const start = await deps.replay.begin(use);
    if (start.kind === "repeat") {
      // A client retry: the same answer again, and nothing published twice.
      log.replayed = true;
      deps.metrics.tokenReuse.inc({ outcome: "repeat" });
      return json(start.status, start.body);
    }
    try {
      const message: EventMessage = { id: newId(), time: now().toISOString(), ...event };
      Object.assign(log, { event_id: message.id, image: event.image, tags: event.tags });
      const subscribers = await deps.publisher.publish(encodeEventMessage(message));
      log.subscribers = subscribers;
      if (subscribers === 0) {
        deps.metrics.publishFailures.inc({ reason: "no_subscriber" });
        throw new AppError("ERR_NO_SUBSCRIBER", "no worker is subscribed to the channel");
      }
      deps.metrics.published.inc();
      const answer = JSON.stringify({ id: message.id, subscribers });
      await deps.replay.complete(start.claim, 202, answer);
      return json(202, answer);
    } catch (err) {
      // Nothing was delivered: let a retry with the same token try again.
      await deps.replay.abandon(start.claim);
      throw err;
    }
  };

  const routes: Record<string, { method: string; route: Route }> = {};
  const probes = probeRoutes({ readiness: deps.readiness, registry: deps.registry });
  for (const [path, probe] of Object.entries(probes)) {
    routes[path] = { method: "GET", route: probe };
  }
  for (const path of EVENT_PATHS) routes[path] = { method: "POST", route: postEvent };
  for (const [path, route] of Object.entries(deps.extraRoutes ?? {})) {
    routes[path] = { method: "POST", route };
  }

  return async (req, info) => {
    const started = performance.now();
    const incoming = req.headers.get("x-request-id");
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : newId();
    let url: URL | undefined;
    try {
      if (isValidHost(req.headers.get("host"))) url = new URL(req.url);
    } catch {
      // No URL can be made of what the client sent: answered below as 400.
    }
    const entry = url && Object.hasOwn(routes, url.pathname) ? routes[url.pathname] : undefined;
    const routeLabel = entry && url ? url.pathname : "unmatched";
    const log: LogFields = {
      request_id: requestId,
      method: req.method,
      path: url ? url.pathname.slice(0, 200) : undefined,
      remote_addr: info.remoteAddr.hostname,
    };
    let response: Response;
    try {
      if (!url) {
        log.reason = "bad_host";
        response = json(400, { error: "Host header is not a valid host[:port]" });
      } else if (!entry) response = json(404, { error: "not found" });
      else if (req.method !== entry.method && !(entry.method === "GET" && req.method === "HEAD")) {
        response = json(405, { error: "method not allowed" }, { allow: entry.method });
      } else response = await entry.route(req, info, log);
    } catch (err) {
      response = errorResponse(err);
      if (err instanceof AuthError) {
        deps.metrics.authDenied.inc({ reason: err.reason });
        Object.assign(log, { reason: err.reason, detail: err.message });
      } else if (err instanceof AppError) {
        Object.assign(log, { code: err.code, detail: err.message });
        if (err.code === "ERR_PUBLISH_FAILED") {
          deps.metrics.publishFailures.inc({ reason: "error" });
        } else if (err.code === "ERR_REPLAY_IN_PROGRESS") {
          // Nothing failed: the first request holds the token and may still deliver.
          log.reason = "replay_in_progress";
          deps.metrics.tokenReuse.inc({ outcome: "in_progress" });
        }
      } else {
        Object.assign(log, { code: "ERR_INTERNAL", detail: String(err).slice(0, 300) });
      }
    }
    response.headers.set("x-request-id", requestId);
    const seconds = (performance.now() - started) / 1000;
    deps.metrics.requests.inc({ route: routeLabel, code: String(response.status) });
    deps.metrics.duration.observe(seconds, { route: routeLabel });
    const level = response.status >= 500 ? "error" : response.status >= 400 ? "warn" : "info";
    const fields = { ...log, status: response.status, duration_ms: Math.round(seconds * 1e4) / 10 };
    if (routeLabel === "/healthz" || routeLabel === "/readyz" || routeLabel === "/metrics") {
      if (response.status >= 400) deps.logger.warn("request", fields);
      else deps.logger.debug("request", fields);
    } else deps.logger[level]("request", fields);
    return response;
  };
}
