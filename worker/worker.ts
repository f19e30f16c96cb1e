/**
 * Wires worker mode together from a Config: Kubernetes access, the inventory,
 * the health server, Valkey coordination, the subscription, the cluster
 * heartbeat and rollout feedback (reports, tracking, resuming). The worker
 * subscribes at once and syncs its inventory meanwhile: an event that arrives
 * before the first sync is complete is held (in order) and handled once it is,
 * so none is refused (web sees a subscriber) or matched against a half-filled
 * inventory. /readyz reports the inventory failing until it is synced and
 * whenever it is not current (relisting, or nothing heard from the API server
 * within the watch idle deadline).
 * Runs until the signal aborts, then finishes in-flight patches and stops.
 */

import { createEventVerifier, importVerifyKeys } from "../shared/event_signature.ts";
import type { Logger } from "../lib/log.ts";
import { createRegistry } from "../lib/metrics.ts";
import { json, probeRoutes } from "../lib/probes.ts";
import type { WorkerConfig } from "../config/settings.ts";
import { createValkeyConnection } from "./valkey.ts";
import { loadValkeyCaFile } from "../shared/valkey_settings.ts";
import { createCoordinator } from "./coordination.ts";
import { createEventHandler } from "./events.ts";
import { createFeedback } from "./feedback.ts";
import { createReportStore, createTrackingStore } from "./feedback_store.ts";
import { startHeartbeat } from "./heartbeat.ts";
import { createInventory, type InventoryOptions } from "./inventory/inventory.ts";
import { createKubeApi, type KubeApi } from "./kube_api.ts";
import { loadKubeAccess } from "./kube_config.ts";
import { createLocalApi, loadLocalInventory } from "./local_api.ts";
import { createWorkerMetrics, exportScopes } from "./metrics.ts";
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

/** Runs worker mode until `runtime.signal` aborts. */
export async function runWorker(config: WorkerConfig, runtime: WorkerRuntime): Promise<void> {
  const { logger, signal } = runtime;
  const valkey = await loadValkeyCaFile(config);
  const registry = createRegistry();
  const metrics = createWorkerMetrics(registry);
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
  const onRequest = (verb: string) => metrics.kubeRequests.inc({ verb });
  let api: KubeApi;
  if (runtime.api) api = runtime.api(onRequest);
  else if (config.localInventory) {
    const deployments = await loadLocalInventory(config.localInventory);
    logger.warn("LOCAL INVENTORY: no cluster is used; restarts are only recorded and logged", {
      file: config.localInventory,
      deployments: deployments.length,
    });
    api = createLocalApi(deployments, logger, onRequest);
  } else {
    const access = await loadKubeAccess({ kubeconfig: config.kubeconfig });
    logger.info("kubernetes access", access.description);
    api = createKubeApi({
      server: access.server,
      httpClient: access.httpClient,
      authorization: access.authorization,
      onRequest,
    });
  }

  const commands = createValkeyConnection(valkey, {
    name: "kuberollouttrigger-worker-commands",
    logger,
    offlineQueue: false,
  });
  // The local inventory has no controller: no rollout would ever progress.
  const rolloutTimeoutMs = config.localInventory ? 0 : config.rolloutTimeout;
  if (config.localInventory && config.rolloutTimeout > 0) {
    logger.info("LOCAL INVENTORY: rollouts are not tracked; reports say only what was restarted");
  }
  const feedback = createFeedback({
    clusterName: config.clusterName,
    rolloutTimeoutMs,
    reports: createReportStore(commands, config.valkeyChannel),
    tracking: createTrackingStore({ client: commands, clusterName: config.clusterName }),
    logger,
    metrics,
  });
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
  const inventoryDone = inventory.run(signal);
  // The inventory holds every Deployment's status once synced: resumed rollouts start from it.
  const resumed = inventory.whenSynced(signal).then(() => {
    if (!signal.aborted) void feedback.resume();
  });

  let subscription: Subscription | undefined;
  const probes = probeRoutes({
    registry,
    readiness: {
      // The name predates the idle deadline; it now means "synced and still current".
      inventory_synced: () => inventory.current(),
      subscribed: () => subscription?.subscribed() ?? false,
    },
    beforeScrape: () => {
      metrics.inventorySize.set(inventory.size());
      for (const [scope, current] of Object.entries(inventory.scopes())) {
        metrics.inventoryCurrent.set(current ? 1 : 0, { scope });
      }
    },
  });
  const server = Deno.serve({
    hostname: config.healthListenAddr.host,
    port: config.healthListenAddr.port,
    signal,
    onListen: (addr) => {
      logger.info("worker health server listening", { addr: `${addr.hostname}:${addr.port}` });
      runtime.onListen?.(addr);
    },
  }, (req) => {
    const probe = probes[new URL(req.url).pathname];
    if (!probe) return json(404, { error: "not found" });
    if (req.method !== "GET" && req.method !== "HEAD") {
      return json(405, { error: "method not allowed" }, { allow: "GET" });
    }
    return probe();
  });

  let heartbeat: Promise<void> | undefined;
  if (!signal.aborted) {
    const handle = createEventHandler({
      inventory,
      api,
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
      feedback,
      clusterName: config.clusterName,
      verifier,
    });
    subscription = subscribe({
      client: createValkeyConnection(valkey, {
        name: "kuberollouttrigger-worker-subscriber",
        logger,
        offlineQueue: true,
        autoResubscribe: false,
      }),
      channel: config.valkeyChannel,
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
    heartbeat = startHeartbeat({
      client: commands,
      clusterName: config.clusterName,
      ready: () => inventory.current() && (subscription?.subscribed() ?? false),
      logger,
      signal,
    });
  }

  await new Promise<void>((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
  logger.info("worker stopping: finishing the event in progress");
  await subscription?.close();
  await heartbeat;
  // Reports still being written get a moment; tracking state lets the next worker resume the rest.
  await feedback.idle(AbortSignal.timeout(2000));
  feedback.stop();
  commands.disconnect();
  await server.finished;
  await inventoryDone;
  await resumed;
  logger.info("worker stopped");
}
