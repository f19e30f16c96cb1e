/**
 * Wires worker mode together from a Config, as a list of steps: verify keys,
 * connect to Kubernetes, start the feedback and the inventory, serve health,
 * subscribe (with the cluster heartbeat), and shut down. The worker
 * subscribes at once and syncs its inventory meanwhile: an event that arrives
 * before the first sync is complete is held (in order) and handled once it is,
 * so none is refused (web sees a subscriber) or matched against a half-filled
 * inventory. /readyz reports the inventory failing until it is synced and
 * whenever it is not current (relisting, or nothing heard from the API server
 * within the watch idle deadline).
 * Runs until the signal aborts, then finishes in-flight patches and stops.
 */

import { importVerifyKeys } from "../shared/event_signature.ts";
import { createEventVerifier, type EventVerifier } from "./event_verifier.ts";
import type { Logger } from "../lib/log.ts";
import { untilAborted } from "../lib/backoff.ts";
import { createRegistry, type Registry } from "../lib/metrics.ts";
import { probeRoutes } from "../lib/probes.ts";
import type { WorkerConfig } from "../config/settings.ts";
import { createValkeyClient, type ValkeyClient } from "../shared/valkey_client.ts";
import { eventChannel } from "../shared/valkey_keys.ts";
import { loadValkeyCaFile } from "../shared/valkey_settings.ts";
import { createCoordinator } from "./coordination.ts";
import { createEventHandler } from "./events.ts";
import { createFeedback, type Feedback } from "./feedback/feedback.ts";
import { createReportStore, createTrackingStore } from "./feedback/store.ts";
import { serveHealth } from "./health.ts";
import { startHeartbeat } from "./feedback/heartbeat.ts";
import { createInventory, type Inventory, type InventoryOptions } from "./inventory/inventory.ts";
import { createKubeApi, type KubeApi } from "./kube/api.ts";
import { loadKubeAccess } from "./kube/config.ts";
import { createLocalApi, loadLocalInventory } from "./kube/local_api.ts";
import { createWorkerMetrics, exportScopes, type WorkerMetrics } from "./metrics.ts";
import { subscribe, type Subscription } from "./subscriber.ts";

/** Effects worker mode needs from its host process. */
export interface WorkerRuntime {
  logger: Logger;
  signal: AbortSignal;
  /** Replaces the real API (dev mode's local inventory); its requests are still counted. */
  api?: (onRequest: (verb: string) => void) => KubeApi;
  onListen?: (addr: { hostname: string; port: number }) => void;
  /** Watch timing (idle deadline, watch timeout, random source); the defaults suit production. */
  watch?: Pick<InventoryOptions, "watchIdleTimeoutMs" | "minWatchTimeoutSeconds" | "random">;
}

/** What the steps after connecting share. */
interface Parts {
  config: WorkerConfig;
  runtime: WorkerRuntime;
  logger: Logger;
  signal: AbortSignal;
  metrics: WorkerMetrics;
  /** The connection for commands (claims, reports, tracking, heartbeat). */
  commands: ValkeyClient;
  valkey: Awaited<ReturnType<typeof loadValkeyCaFile>>;
}

/** Runs worker mode until `runtime.signal` aborts. */
export async function runWorker(config: WorkerConfig, runtime: WorkerRuntime): Promise<void> {
  const { logger, signal } = runtime;
  const valkey = await loadValkeyCaFile(config);
  const registry = createRegistry();
  const metrics = createWorkerMetrics(registry);
  const verifier = await loadVerifier(config, logger);
  const api = await connectKube(config, {
    runtime,
    onRequest: (verb) => metrics.kubeRequests.inc({ verb }),
  });
  const commands = createValkeyClient(valkey, {
    name: "kuberollouttrigger-worker-commands",
    logger,
  });
  const parts: Parts = { config, runtime, logger, signal, metrics, commands, valkey };
  const feedback = startFeedback(parts);
  const inventory = startInventory(parts, { api, feedback });
  let subscription: Subscription | undefined;
  const server = serveHealth({
    addr: config.healthListenAddr,
    probes: probes(parts, {
      registry,
      inventory: inventory.inventory,
      subscription: () => subscription,
    }),
    logger,
    signal,
    onListen: runtime.onListen,
  });
  let heartbeat: Promise<void> | undefined;
  if (!signal.aborted) {
    subscription = subscribeEvents(parts, {
      api,
      inventory: inventory.inventory,
      feedback,
      verifier,
    });
    heartbeat = startHeartbeat({
      client: commands,
      clusterName: config.clusterName,
      ready: () => inventory.inventory.current() && (subscription?.subscribed() ?? false),
      logger,
      signal,
    });
  }
  await untilAborted(signal);
  await shutdown(parts, { subscription, heartbeat, feedback, server, inventory });
}

/** Stops in order: no new events, the event in progress finished, reports given a moment. */
async function shutdown(
  { logger, commands }: Parts,
  running: {
    subscription?: Subscription;
    heartbeat?: Promise<void>;
    feedback: Feedback;
    server: Deno.HttpServer;
    inventory: { done: Promise<void>; resumed: Promise<void> };
  },
): Promise<void> {
  logger.info("worker stopping: finishing the event in progress");
  await running.subscription?.close();
  await running.heartbeat;
  // Reports still being written get a moment; tracking state lets the next worker resume the rest.
  await running.feedback.idle(AbortSignal.timeout(2000));
  running.feedback.stop();
  commands.disconnect();
  await running.server.finished;
  await running.inventory.done;
  await running.inventory.resumed;
  logger.info("worker stopped");
}

/** The signature checks of EVENT_VERIFY_KEYS; without keys, a loud warning. */
async function loadVerifier(config: WorkerConfig, logger: Logger): Promise<EventVerifier> {
  const keys = config.eventVerifyKeys.length > 0
    ? await importVerifyKeys(config.eventVerifyKeys)
    : undefined;
  const verifier = createEventVerifier({ keys, maxAgeMs: config.eventMaxAge });
  if (keys) logger.info("verifying event signatures", { key_ids: keys.ids });
  else {
    logger.warn(
      "EVENT_VERIFY_KEYS is not set: channel messages are not authenticated; anyone who can publish to Valkey can restart Deployments",
    );
  }
  return verifier;
}

/** The Kubernetes API: the runtime's, dev mode's local inventory, or the cluster's. */
async function connectKube(
  config: WorkerConfig,
  { runtime, onRequest }: { runtime: WorkerRuntime; onRequest: (verb: string) => void },
): Promise<KubeApi> {
  const { logger } = runtime;
  if (runtime.api) return runtime.api(onRequest);
  if (config.localInventory) {
    const deployments = await loadLocalInventory(config.localInventory);
    logger.warn("LOCAL INVENTORY: no cluster is used; restarts are only recorded and logged", {
      file: config.localInventory,
      deployments: deployments.length,
    });
    return createLocalApi(deployments, logger, onRequest);
  }
  const access = await loadKubeAccess({ kubeconfig: config.kubeconfig });
  logger.info("kubernetes access", access.description);
  return createKubeApi({
    server: access.server,
    httpClient: access.httpClient,
    authorization: access.authorization,
    onRequest,
  });
}

/** Reports and rollout tracking, kept in Valkey. */
function startFeedback({ config, logger, metrics, commands }: Parts): Feedback {
  // The local inventory has no controller: no rollout would ever progress.
  const rolloutTimeoutMs = config.localInventory ? 0 : config.rolloutTimeout;
  if (config.localInventory && config.rolloutTimeout > 0) {
    logger.info("LOCAL INVENTORY: rollouts are not tracked; reports say only what was restarted");
  }
  return createFeedback({
    clusterName: config.clusterName,
    rolloutTimeoutMs,
    reports: createReportStore(commands, config.valkeyChannel),
    tracking: createTrackingStore({ client: commands, clusterName: config.clusterName }),
    logger,
    metrics,
  });
}

/** Starts following the Deployments in scope; resumes tracked rollouts once synced. */
function startInventory(
  { config, runtime, logger, signal, metrics }: Parts,
  { api, feedback }: { api: KubeApi; feedback: Feedback },
) {
  const inventory = createInventory({
    api,
    namespaces: config.watchNamespaces,
    logger,
    ...runtime.watch,
    onRelist: (scope) => metrics.relists.inc({ scope }),
    onWatchError: (scope) => metrics.watchErrors.inc({ scope }),
    onWatchIdle: (scope) => metrics.watchIdle.inc({ scope }),
    onMalformedEvent: (scope) => metrics.malformedEvents.inc({ scope }),
    onObject: (type, d) => feedback.observe(type, d),
  });
  exportScopes(metrics, Object.keys(inventory.scopes()));
  const done = inventory.run(signal);
  // The inventory holds every Deployment's status once synced: resumed rollouts start from it.
  const resumed = inventory.whenSynced(signal).then(() => {
    if (!signal.aborted) void feedback.resume();
  });
  return { inventory, done, resumed };
}

/** /healthz, /readyz (inventory current and subscribed) and /metrics. */
function probes(
  { metrics }: Parts,
  { registry, inventory, subscription }: {
    registry: Registry;
    inventory: Inventory;
    subscription: () => Subscription | undefined;
  },
) {
  return probeRoutes({
    registry,
    readiness: {
      // The name predates the idle deadline; it now means "synced and still current".
      inventory_synced: () => inventory.current(),
      subscribed: () => subscription()?.subscribed() ?? false,
    },
    beforeScrape: () => {
      metrics.inventorySize.set(inventory.size());
      for (const [scope, current] of Object.entries(inventory.scopes())) {
        metrics.inventoryCurrent.set(current ? 1 : 0, { scope });
      }
    },
  });
}

/** Subscribes to the channel; each message goes to the event handler, held until synced. */
function subscribeEvents(
  { config, logger, signal, metrics, commands, valkey }: Parts,
  deps: { api: KubeApi; inventory: Inventory; feedback: Feedback; verifier: EventVerifier },
): Subscription {
  const { inventory } = deps;
  const handle = createEventHandler({
    inventory,
    api: deps.api,
    coordinator: createCoordinator({
      client: commands,
      clusterName: config.clusterName,
      windowMs: config.dedupWindow,
      logger,
    }),
    prefixes: config.allowedImagePrefixes,
    logger,
    metrics,
    dryRun: config.dryRun,
    feedback: deps.feedback,
    clusterName: config.clusterName,
    verifier: deps.verifier,
  });
  const events = eventChannel(config.valkeyChannel, valkey);
  return subscribe({
    connect: (subscription, onStateChange) =>
      createValkeyClient(valkey, {
        name: "kuberollouttrigger-worker-subscriber",
        logger,
        subscription,
        onStateChange,
      }),
    channel: events.name,
    sharded: events.sharded,
    logger,
    metrics,
    // Held until the first sync: the subscriber hands messages on one at a time, in order.
    onMessage: async (raw) => {
      if (!inventory.synced()) {
        logger.info("event held until the inventory is synced", { bytes: raw.length });
        await inventory.whenSynced(signal);
        if (signal.aborted) return undefined;
      }
      return await handle(raw);
    },
  });
}
