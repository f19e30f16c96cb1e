/**
 * Wires worker mode together from a Config, as a list of steps: verify keys,
 * connect to Kubernetes (and know which cluster that is), start the feedback
 * and the inventory, serve health, register the cluster under its name, read
 * the event stream through the cluster's consumer group, and shut down.
 * The reader creates the group at once (events from then on reach the
 * cluster), and reads once the cluster is registered: a worker whose
 * CLUSTER_NAME is held by another cluster reads nothing. An event read
 * before every scope of the inventory has listed or failed once is held, in
 * order, and then matched against what listed. /readyz reports the
 * inventory (with the failing scopes' reasons), the registration and the
 * reader. Runs until the signal aborts, then finishes the event in hand.
 */

import { importVerifyKeys } from "../shared/event_signature.ts";
import { createEventVerifier, type EventVerifier } from "./event_verifier.ts";
import type { Logger } from "../lib/log.ts";
import { untilAborted } from "../lib/backoff.ts";
import { createRegistry, type Registry } from "../lib/metrics.ts";
import { probeRoutes } from "../lib/probes.ts";
import type { WorkerConfig } from "../config/settings.ts";
import { createValkeyClient, type ValkeyClient } from "../shared/valkey_client.ts";
import { loadValkeyCaFile } from "../shared/valkey_settings.ts";
import { createCoordinator } from "./coordination.ts";
import { createEventHandler } from "./events.ts";
import { createFeedback, type Feedback } from "./feedback/feedback.ts";
import { createReportStore, createTrackingStore } from "./feedback/store.ts";
import { importSigningKey, type SigningKey } from "../shared/signing_key.ts";
import { createStateSeal, type StateSeal, UNSEALED } from "./sealed_state.ts";
import { serveHealth } from "./health.ts";
import {
  apiServerIdentity,
  type ClusterIdentity,
  labelIdentity,
  localInventoryIdentity,
} from "./cluster_identity.ts";
import { type ClusterRegistration, startClusterRegistration } from "./cluster_registration.ts";
import { startStreamReader, type StreamReader } from "./event_stream_reader.ts";
import { createStreamEvents } from "./stream_events.ts";
import { createInventory, type Inventory, type InventoryOptions } from "./inventory/inventory.ts";
import { createKubeApi, type KubeApi } from "./kube/api.ts";
import { loadKubeAccess } from "./kube/config.ts";
import { createLocalApi, loadLocalInventory } from "./kube/local_api.ts";
import {
  createWorkerMetrics,
  exportScopeAvailability,
  exportScopes,
  type WorkerMetrics,
} from "./metrics.ts";

/** Effects worker mode needs from its host process. */
export interface WorkerRuntime {
  logger: Logger;
  /** The program's version (deno.json's, which only main.ts reads), for build_info. */
  version?: string;
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
  /** Seals the state this worker reads back into signed reports (no-op without REPORT_SIGNING_KEY). */
  seal: StateSeal;
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
  const metrics = createWorkerMetrics(registry, runtime.version);
  const verifier = await loadVerifier(config, logger);
  const reportKey = await loadReportKey(config, logger);
  const kube = await connectKube(config, {
    runtime,
    onRequest: (verb) => metrics.kubeRequests.inc({ verb }),
  });
  const commands = createValkeyClient(valkey, {
    name: "kuberollouttrigger-worker-commands",
    logger,
  });
  const seal = reportKey ? await createStateSeal(reportKey) : UNSEALED;
  const parts: Parts = { config, seal, runtime, logger, signal, metrics, commands, valkey };
  const feedback = startFeedback(parts, reportKey);
  const inventory = startInventory(parts, { api: kube.api, feedback });
  let events: ReturnType<typeof readEvents> | undefined;
  const registration = startClusterRegistration({
    client: commands,
    clusterName: config.clusterName,
    identity: kube.identity,
    // Announced once events from now on reach the cluster's group and can be matched.
    serving: () => (events?.reader.grouped() ?? false) && inventory.inventory.settled(),
    logger,
    signal,
  });
  const server = serveHealth({
    addr: config.healthListenAddr,
    probes: probes(parts, {
      registry,
      inventory: inventory.inventory,
      reading: () => events?.reader.reading() ?? false,
      registration,
    }),
    logger,
    signal,
    onListen: runtime.onListen,
  });
  if (!signal.aborted) {
    events = readEvents(parts, {
      api: kube.api,
      inventory: inventory.inventory,
      feedback,
      verifier,
      // A worker whose CLUSTER_NAME is held by another cluster must not take that cluster's events.
      ready: () => registration.whenRegistered(signal),
      paused: () => registration.conflict() !== undefined,
    });
  }
  await untilAborted(signal);
  await shutdown(parts, { events, registration, feedback, server, inventory });
}

/** Stops in order: no new events, the event in progress finished, reports given a moment. */
async function shutdown(
  { logger, commands }: Parts,
  running: {
    events?: ReturnType<typeof readEvents>;
    registration: ClusterRegistration;
    feedback: Feedback;
    server: Deno.HttpServer;
    inventory: { done: Promise<void>; resumed: Promise<void> };
  },
): Promise<void> {
  logger.info("worker stopping: finishing the event in progress");
  await running.events?.reader.stopped;
  running.events?.client.disconnect();
  await running.registration.done;
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
  // The handler reports events older than the window expired; the verifier's own bound sits a
  // minute beyond it, so no event is dropped unreported on the edge between the two checks.
  const verifier = createEventVerifier({ keys, maxAgeMs: config.catchUpWindow + 60_000 });
  if (keys) logger.info("verifying event signatures", { key_ids: keys.ids });
  else {
    logger.warn(
      "EVENT_VERIFY_KEYS is not set: channel messages are not authenticated; anyone who can publish to Valkey can restart Deployments",
    );
  }
  return verifier;
}

/** REPORT_SIGNING_KEY, imported and checked; without it, a loud warning. */
async function loadReportKey(
  config: WorkerConfig,
  logger: Logger,
): Promise<SigningKey | undefined> {
  if (!config.reportSigningKey) {
    logger.warn(
      "REPORT_SIGNING_KEY is not set: this cluster's reports are unsigned; web with REPORT_VERIFY_KEYS ignores them, and without it anyone who can write to Valkey can forge them",
    );
    return undefined;
  }
  const key = await importSigningKey(
    config.reportSigningKey,
    "REPORT_SIGNING_KEY (--report-signing-key)",
  );
  // The line web's REPORT_VERIFY_KEYS needs, so an operator can check it against web's log.
  logger.info("signing reports", { cluster: config.clusterName, key_id: key.keyId });
  return key;
}

/**
 * The Kubernetes API (the runtime's, dev mode's local inventory, or the
 * cluster's) and the identity of the cluster behind it.
 */
async function connectKube(
  config: WorkerConfig,
  { runtime, onRequest }: { runtime: WorkerRuntime; onRequest: (verb: string) => void },
): Promise<{ api: KubeApi; identity: ClusterIdentity }> {
  const { logger } = runtime;
  if (runtime.api) return { api: runtime.api(onRequest), identity: labelIdentity("injected api") };
  const selector = config.deploymentSelector;
  if (config.localInventory) {
    // As the API server would: the selector's unlabelled Deployments are never listed.
    const deployments = (await loadLocalInventory(config.localInventory))
      .filter((d) => !selector || selector.matches(d.metadata.labels));
    logger.warn("LOCAL INVENTORY: no cluster is used; restarts are only recorded and logged", {
      file: config.localInventory,
      deployments: deployments.length,
    });
    return {
      api: createLocalApi(deployments, logger, onRequest),
      identity: await localInventoryIdentity(config.localInventory),
    };
  }
  // An exec plugin runs here once (the worker stops if it cannot), then as its credentials expire.
  const access = await loadKubeAccess({ kubeconfig: config.kubeconfig, logger });
  logger.info("kubernetes access", access.description);
  const api = createKubeApi({
    server: access.server,
    credentials: access.credentials,
    renewCredentials: access.renewCredentials,
    onRequest,
    labelSelector: selector?.text,
  });
  return { api, identity: apiServerIdentity(access) };
}

/** Reports and rollout tracking, kept in Valkey. */
function startFeedback(
  { config, logger, metrics, commands, seal }: Parts,
  reportKey: SigningKey | undefined,
): Feedback {
  // The local inventory has no controller: no rollout would ever progress.
  const rolloutTimeoutMs = config.localInventory ? 0 : config.rolloutTimeout;
  if (config.localInventory && config.rolloutTimeout > 0) {
    logger.info("LOCAL INVENTORY: rollouts are not tracked; reports say only what was restarted");
  }
  return createFeedback({
    clusterName: config.clusterName,
    rolloutTimeoutMs,
    rolloutBakeTimeMs: config.rolloutBakeTime,
    reports: createReportStore(commands, config.valkeyChannel, reportKey),
    tracking: createTrackingStore({ client: commands, clusterName: config.clusterName, seal }),
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
    selector: config.deploymentSelector,
  });
  exportScopes(metrics, Object.keys(inventory.scopes()));
  const done = inventory.run(signal);
  // The inventory holds every Deployment's status once synced: resumed rollouts start from it.
  const resumed = inventory.whenSynced(signal).then(() => {
    if (!signal.aborted) void feedback.resume();
  });
  return { inventory, done, resumed };
}

/** /healthz, /readyz (inventory current, registered, reading events) and /metrics. */
function probes(
  { metrics }: Parts,
  { registry, inventory, reading, registration }: {
    registry: Registry;
    inventory: Inventory;
    reading: () => boolean;
    registration: ClusterRegistration;
  },
) {
  return probeRoutes({
    registry,
    readiness: {
      // The name predates the idle deadline; it now means "synced and still current".
      inventory_synced: () => inventory.readiness(),
      // Ready once web counts this cluster as live: registered, announced, no name conflict.
      cluster_registered: () => registration.announced(),
      events_reading: reading,
    },
    beforeScrape: () => {
      metrics.inventorySize.set(inventory.size());
      for (const [scope, current] of Object.entries(inventory.scopes())) {
        metrics.inventoryCurrent.set(current ? 1 : 0, { scope });
      }
      exportScopeAvailability(metrics, inventory);
    },
  });
}

/**
 * Reads the event stream through the cluster's consumer group; each event goes
 * to the handler once the inventory has settled, and is acknowledged when done.
 */
function readEvents(
  { config, logger, signal, metrics, commands, valkey, seal }: Parts,
  deps: {
    api: KubeApi;
    inventory: Inventory;
    feedback: Feedback;
    verifier: EventVerifier;
    ready: () => Promise<void>;
    paused: () => boolean;
  },
): { reader: StreamReader; client: ValkeyClient } {
  const { inventory } = deps;
  const handler = createEventHandler({
    inventory,
    api: deps.api,
    coordinator: createCoordinator({
      client: commands,
      clusterName: config.clusterName,
      windowMs: config.dedupWindow,
      logger,
      seal,
      // A replay inside the catch-up window must find the event handled.
      claimTtlSeconds: Math.max(86_400, Math.ceil((2 * config.catchUpWindow) / 1000)),
    }),
    prefixes: config.allowedImagePrefixes,
    policy: { requireOptIn: config.requireOptIn, selector: config.deploymentSelector },
    logger,
    metrics,
    dryRun: config.dryRun,
    catchUpWindowMs: config.catchUpWindow,
    feedback: deps.feedback,
    clusterName: config.clusterName,
    verifier: deps.verifier,
  });
  // Blocking reads hold their connection: the reader has its own.
  const client = createValkeyClient(valkey, { name: "kuberollouttrigger-worker-events", logger });
  const reader = startStreamReader({
    client,
    group: config.clusterName,
    // Unique per process: a restarted pod's old consumer keeps its pending entries for the others.
    consumer: crypto.randomUUID(),
    logger,
    events: {
      reading: (on) => metrics.streamReading.set(on ? 1 : 0),
      failed: () => metrics.streamFailures.inc(),
      claimed: (count) => metrics.streamClaimed.inc({}, count),
    },
    handle: createStreamEvents({ handler, inventory, logger, metrics, signal }),
    ready: deps.ready,
    paused: deps.paused,
    signal,
    blockMs: Math.max(100, Math.min(2000, Math.floor(config.valkeyTimeout / 2))),
  });
  return { reader, client };
}
