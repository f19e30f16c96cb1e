/**
 * Wires web mode together from a Config and starts the HTTP server: Valkey
 * publisher, issuer keys, token verifier, authorizer, handler, metrics. Runs
 * until the signal aborts, then answers new requests 503, lets the requests in
 * progress finish (waiting status reads answer at once with what is known)
 * within SHUTDOWN_GRACE_MS, closes the listener, and only then disconnects
 * from Valkey.
 */

import type { WebConfig } from "../config/settings.ts";
import { createValkeyClient, type ValkeyClient } from "../shared/valkey_client.ts";
import { eventChannel } from "../shared/valkey_keys.ts";
import type { Logger } from "../lib/log.ts";
import { createRegistry } from "../lib/metrics.ts";
import { createDevIssuer, DEV_TOKEN_PATH, type DevIssuer } from "./dev_issuer.ts";
import { createHandler } from "./handler.ts";
import { createKeyStore } from "./jwks.ts";
import { createWebMetrics, type WebMetrics } from "./metrics.ts";
import { createTokenVerifier } from "./oidc.ts";
import { createAuthorizer } from "./policy.ts";
import { createPublisher } from "./publisher.ts";
import { createReplayGuard } from "./replay.ts";
import { createStatusReader, type ReportChecks } from "./status_store.ts";
import { createReportVerifier } from "./report_verifier.ts";
import { createStatusWaiters, type StatusWaiters } from "./status_waiters.ts";
import { statusChannel } from "../shared/event_status.ts";
import { importVerifyKeys } from "../shared/event_signature.ts";
import { createSigner } from "./event_signer.ts";
import { startNotifier } from "./notifier.ts";
import { createNotificationRecord } from "./notification_record.ts";
import type { NotificationFormat } from "./notification_message.ts";

/** Effects web mode needs from its host process. */
export interface WebRuntime {
  logger: Logger;
  /** The program's version (deno.json's, which only main.ts reads), for build_info. */
  version?: string;
  /** Aborting it starts a graceful shutdown. */
  signal: AbortSignal;
  fetch?: typeof fetch;
  /** Replaces the issuer's keys and adds routes (tests); dev mode makes its own. */
  issuerOverride?: DevIssuer;
  /** Called once the server listens, with the bound address. */
  onListen?: (addr: { hostname: string; port: number }) => void;
}

/** Runs web mode until `runtime.signal` aborts. */
export async function runWeb(config: WebConfig, runtime: WebRuntime): Promise<void> {
  const { logger } = runtime;
  const registry = createRegistry();
  const metrics = createWebMetrics(registry, runtime.version);
  const { signer, bindingKeys, reportChecks } = await loadSigning(config, logger, metrics);
  // With signed reports every event waits for the configured clusters, never the registered ones.
  const fixedClusters = config.clusters.length > 0
    ? config.clusters
    : reportChecks?.verifier.clusters;
  const valkey = createValkeyClient(config, { name: "kuberollouttrigger-web", logger });
  const events = eventChannel(config.valkeyChannel, config);
  const publisher = createPublisher({
    client: valkey,
    channel: events.name,
    publishCommand: events.publish,
    statusTtlMs: config.statusTtl,
    catchUpWindowMs: config.catchUpWindow,
    forgetAfterMs: config.clusterForgetAfter,
    clusters: fixedClusters,
  });
  const statusWaiters = createStatusWaiters({ max: config.statusMaxWaiters });
  const statusReader = createStatusReader(valkey, logger, bindingKeys, reportChecks);
  const notifications = subscribeToStatusChanges(config, logger, statusWaiters);
  const override = runtime.issuerOverride ??
    (config.devMode
      ? await createDevIssuer({ audience: config.oidcAudience, allowedOrgs: config.allowedOrgs })
      : undefined);
  if (config.devMode) {
    logger.warn(
      `DEV MODE: GitHub is NOT the issuer. Tokens come from POST ${DEV_TOKEN_PATH} (loopback clients only), signed by a key that lives only in this process. Never run this in production.`,
    );
  }
  if (config.repositoryRules.size > 0) {
    // The rules are not secret: their count here, their text in the config that set them.
    logger.info("repository rules", { rules: config.repositoryRules.size });
  }
  const issuer = override?.issuer ?? config.oidcIssuer;
  const keys = override?.keys ?? createKeyStore({
    issuer,
    fetch: runtime.fetch,
    cooldownMs: config.jwksCooldown,
    ttlMs: config.jwksCacheTtl,
    timeoutMs: config.oidcHttpTimeout,
    onFetch: ({ url, ok, error }) => {
      metrics.issuerFetches.inc({ result: ok ? "ok" : "error" });
      if (ok) logger.debug("fetched issuer document", { url });
      else logger.warn("issuer fetch failed", { url, error });
    },
  });
  const handler = createHandler({
    verify: createTokenVerifier({
      issuer,
      audience: config.oidcAudience,
      keys,
      clockToleranceMs: config.clockTolerance,
      maxTokenAgeMs: config.maxTokenAge,
    }),
    authorize: createAuthorizer(config),
    publisher,
    statusReader,
    statusWaiters,
    statusReportTimeoutMs: config.statusReportTimeout,
    signal: runtime.signal,
    replay: createReplayGuard({
      clockToleranceMs: config.clockTolerance,
      maxTokenAgeMs: config.maxTokenAge,
    }),
    prefixes: config.allowedImagePrefixes,
    logger,
    metrics,
    registry,
    readiness: { valkey: () => publisher.ping(), issuer_keys: () => keys.ready() },
    extraRoutes: override?.routes,
    signer,
    signedClusters: reportChecks && fixedClusters,
    rules: config.repositoryRules,
    notifying: config.notifyUrls.length > 0,
  });
  const stopNotifier = new AbortController();
  const notifier = config.notifyUrls.length > 0
    ? startNotifier({
      targets: config.notifyUrls,
      states: config.notifyStates,
      format: config.notifyFormat as NotificationFormat,
      secret: config.notifySecret || undefined,
      record: createNotificationRecord(valkey),
      reader: statusReader,
      reportTimeoutMs: config.statusReportTimeout,
      statusTtlMs: config.statusTtl,
      logger,
      counter: metrics.notifications,
      queued: metrics.notificationsQueued,
      signal: AbortSignal.any([runtime.signal, stopNotifier.signal]),
    })
    : undefined;
  if (notifier) {
    logger.info("notifying", {
      targets: config.notifyUrls.map((t) => t.label),
      states: config.notifyStates,
      format: config.notifyFormat,
    });
  }

  // Not given runtime.signal: aborting Deno.serve's own signal cuts requests in flight.
  const inFlight = createInFlight();
  const server = Deno.serve({
    hostname: config.listenAddr.host,
    port: config.listenAddr.port,
    onListen: (addr) => {
      logger.info("web listening", { addr: `${addr.hostname}:${addr.port}` });
      runtime.onListen?.(addr);
    },
    onError: (err) => {
      logger.error("unhandled request error", { error: String(err).slice(0, 300) });
      return new Response('{"error":"internal error"}', { status: 500 });
    },
  }, (req, info) => inFlight.track(handler(req, { remoteAddr: info.remoteAddr as Deno.NetAddr })));

  await Promise.race([untilAborted(runtime.signal), server.finished]);
  await finishRequests(server, inFlight, logger);
  // Deliveries in flight stop and hand their events to another replica, within the grace.
  stopNotifier.abort();
  if (notifier) await within(notifier.stopped, SHUTDOWN_GRACE_MS);
  // Only now: a request still in flight above publishes and reads through these connections.
  logger.info("web stopped; disconnecting from valkey");
  valkey.disconnect();
  notifications.disconnect();
}

/**
 * Web's keys: EVENT_SIGNING_KEY signs events and bindings (its public half and
 * EVENT_VERIFY_KEYS check bindings), REPORT_VERIFY_KEYS decides which cluster
 * reports count. Each missing half is a loud warning: Valkey write access
 * then decides what restarts or what CI is told.
 */
async function loadSigning(config: WebConfig, logger: Logger, metrics: WebMetrics) {
  const signer = config.eventSigningKey ? await createSigner(config.eventSigningKey) : undefined;
  // Its own key verifies its bindings; EVENT_VERIFY_KEYS those of web replicas mid-rotation.
  const bindingKeys = signer
    ? await importVerifyKeys([{ raw: signer.publicKey }, ...config.eventVerifyKeys])
    : undefined;
  if (signer) {
    logger.info("signing events", { key_id: signer.keyId, binding_keys: bindingKeys!.ids });
  } else logger.warn("EVENT_SIGNING_KEY is not set: events are published unsigned");
  if (config.reportVerifyKeys.size === 0) {
    logger.warn(
      "REPORT_VERIFY_KEYS is not set: cluster reports are not authenticated; anyone who can write to Valkey can make an event read succeeded",
    );
    return { signer, bindingKeys, reportChecks: undefined };
  }
  const verifier = await createReportVerifier(config.reportVerifyKeys);
  const clusters = config.clusters.length > 0 ? config.clusters : verifier.clusters;
  logger.info("verifying cluster reports", { clusters, key_ids: verifier.keyIds });
  const reportChecks: ReportChecks = {
    verifier,
    clusters,
    rejected: (reason) => metrics.reportsIgnored.inc({ reason }),
  };
  return { signer, bindingKeys, reportChecks };
}

/**
 * How long web waits at shutdown for requests in progress: a body may take
 * BODY_TIMEOUT_MS (10 s) to arrive, then its publish VALKEY_TIMEOUT (5 s by
 * default). Well within Kubernetes' default terminationGracePeriodSeconds (30 s).
 */
export const SHUTDOWN_GRACE_MS = 15_000;

/** Resolves when `signal` aborts. */
function untilAborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}

/** Requests being handled now, and a way to wait until there are none. */
interface InFlight {
  track(answer: Promise<Response>): Promise<Response>;
  count(): number;
  /** Resolves once no request is being handled. */
  idle(): Promise<void>;
}

function createInFlight(): InFlight {
  let count = 0;
  let waiting: (() => void)[] = [];
  return {
    track(answer) {
      count++;
      return answer.finally(() => {
        if (--count > 0) return;
        for (const resolve of waiting) resolve();
        waiting = [];
      });
    },
    count: () => count,
    idle: () => count === 0 ? Promise.resolve() : new Promise((r) => waiting.push(r)),
  };
}

/** Resolves to true when `promise` settles within `ms`, else false. */
async function within(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<false>((resolve) => timer = setTimeout(() => resolve(false), ms));
  try {
    return await Promise.race([promise.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Lets the requests in progress finish within SHUTDOWN_GRACE_MS, then closes
 * the server. The handler's signal has aborted: waiting status reads answer at
 * once with what is known, and new requests get 503. The listener closes only
 * once no request is in progress, since Deno's shutdown() ends request bodies
 * still being read (it waits for the responses). Past the bound the server is
 * closed anyway and no longer keeps the process alive.
 */
async function finishRequests(
  server: Deno.HttpServer,
  inFlight: InFlight,
  logger: Logger,
): Promise<void> {
  const deadline = Date.now() + SHUTDOWN_GRACE_MS;
  const finished = await within(inFlight.idle(), SHUTDOWN_GRACE_MS) &&
    await within(server.shutdown(), Math.max(0, deadline - Date.now()));
  if (finished) return;
  logger.warn("requests still in progress after the shutdown grace period; stopping anyway", {
    grace_ms: SHUTDOWN_GRACE_MS,
    in_flight: inFlight.count(),
  });
  server.shutdown().catch(() => {});
  server.unref();
}

/**
 * One subscription for every waiting status request: workers publish an
 * event's id on the status channel when its record changes. After a gap in
 * the subscription every waiter re-reads once, since notifications were lost.
 */
function subscribeToStatusChanges(
  config: WebConfig,
  logger: Logger,
  waiters: StatusWaiters,
): ValkeyClient {
  const channel = statusChannel(config.valkeyChannel);
  return createValkeyClient(config, {
    name: "kuberollouttrigger-web-status",
    logger,
    onStateChange: (connected) => {
      if (connected) waiters.notifyAll();
    },
    subscription: {
      channels: [channel],
      onMessage: (from, id) => {
        if (from === channel) waiters.notify(id);
      },
    },
  });
}
