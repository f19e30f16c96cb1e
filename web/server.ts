/**
 * Wires web mode together from a Config and starts the HTTP server: Valkey
 * publisher, issuer keys, token verifier, authorizer, handler, metrics. Runs
 * until the signal aborts, then drains in-flight requests and disconnects.
 */

import type { WebConfig } from "../config/settings.ts";
import { createValkeyClient, type ValkeyClient } from "../shared/valkey_client.ts";
import { eventChannel } from "../shared/valkey_keys.ts";
import type { Logger } from "../lib/log.ts";
import { createRegistry } from "../lib/metrics.ts";
import { createDevIssuer, DEV_TOKEN_PATH, type DevIssuer } from "./dev_issuer.ts";
import { createHandler } from "./handler.ts";
import { createKeyStore } from "./jwks.ts";
import { createWebMetrics } from "./metrics.ts";
import { createTokenVerifier } from "./oidc.ts";
import { createAuthorizer } from "./policy.ts";
import { createPublisher } from "./publisher.ts";
import { createReplayGuard } from "./replay.ts";
import { createStatusReader } from "./status_store.ts";
import { createStatusWaiters, type StatusWaiters } from "./status_waiters.ts";
import { statusChannel } from "../shared/event_status.ts";
import { importVerifyKeys } from "../shared/event_signature.ts";
import { createSigner } from "./event_signer.ts";

/** Effects web mode needs from its host process. */
export interface WebRuntime {
  logger: Logger;
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
  const metrics = createWebMetrics(registry);
  const signer = config.eventSigningKey ? await createSigner(config.eventSigningKey) : undefined;
  // Its own key verifies its bindings; EVENT_VERIFY_KEYS those of web replicas mid-rotation.
  const bindingKeys = signer
    ? await importVerifyKeys([{ raw: signer.publicKey }, ...config.eventVerifyKeys])
    : undefined;
  if (signer) {
    logger.info("signing events", { key_id: signer.keyId, binding_keys: bindingKeys!.ids });
  } else logger.warn("EVENT_SIGNING_KEY is not set: events are published unsigned");
  const valkey = createValkeyClient(config, { name: "kuberollouttrigger-web", logger });
  const events = eventChannel(config.valkeyChannel, config);
  const publisher = createPublisher({
    client: valkey,
    channel: events.name,
    publishCommand: events.publish,
    statusTtlMs: config.statusTtl,
    catchUpWindowMs: config.catchUpWindow,
    forgetAfterMs: config.clusterForgetAfter,
    clusters: config.clusters,
  });
  const statusWaiters = createStatusWaiters({ max: config.statusMaxWaiters });
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
    statusReader: createStatusReader(valkey, logger, bindingKeys),
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
  });

  const server = Deno.serve({
    hostname: config.listenAddr.host,
    port: config.listenAddr.port,
    signal: runtime.signal,
    onListen: (addr) => {
      logger.info("web listening", { addr: `${addr.hostname}:${addr.port}` });
      runtime.onListen?.(addr);
    },
    onError: (err) => {
      logger.error("unhandled request error", { error: String(err).slice(0, 300) });
      return new Response('{"error":"internal error"}', { status: 500 });
    },
  }, (req, info) => handler(req, { remoteAddr: info.remoteAddr as Deno.NetAddr }));

  await server.finished;
  logger.info("web stopped; disconnecting from valkey");
  valkey.disconnect();
  notifications.disconnect();
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
