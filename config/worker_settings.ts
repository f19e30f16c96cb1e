/**
 * The worker's settings: the cluster (kubeconfig or in-cluster, namespaces,
 * its name), restarts (dry run, dedup window, rollout timeout), health, the
 * local inventory of dev mode, signed events, and the cluster's own say
 * (mandatory opt-in, a label selector); and the combinations among them
 * that are refused.
 */

import { parseListenAddr } from "../lib/setting_values.ts";
import { parseLabelSelector } from "../lib/label_selector.ts";
import { parseSigningKey, parseVerifyKeys } from "../shared/event_keys.ts";
import {
  bool,
  BOTH,
  type ConfigOfRows,
  duration,
  listOf,
  positiveDuration,
  setting,
  text,
  WORKER,
} from "./setting.ts";

function namespace(item: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(item)) {
    throw new Error(`"${item}" is not a valid namespace name`);
  }
  return item;
}

/** A cluster's name: CLUSTER_NAME, and each entry of web's CLUSTERS. */
export function clusterName(raw: string): string {
  const v = raw.trim();
  if (!/^[A-Za-z0-9._-]{1,63}$/.test(v)) {
    throw new Error("must be 1-63 letters, digits, '.', '_' or '-'");
  }
  return v;
}

/** The worker's rows, in the order --help shows them. */
export const WORKER_SETTINGS = {
  kubeconfig: setting({
    env: "KUBECONFIG",
    flag: "kubeconfig",
    modes: WORKER,
    show: true,
    help:
      "Path of a kubeconfig file, or a ':'-separated list merged as kubectl merges it; empty means in-cluster config (service-account token and CA). A user that runs an exec credential plugin needs --allow-run for exactly that command.",
    parse: text,
  }),
  watchNamespaces: setting({
    env: "WATCH_NAMESPACES",
    flag: "watch-namespaces",
    modes: WORKER,
    show: true,
    help:
      "Comma-separated namespaces to watch; empty means every namespace the worker may list cluster-wide.",
    parse: listOf(namespace),
  }),
  clusterName: setting({
    env: "CLUSTER_NAME",
    flag: "cluster-name",
    modes: WORKER,
    show: true,
    default: "default",
    help:
      "Names this Kubernetes cluster in logs, reports and Valkey (its consumer group and claims); give each cluster sharing a Valkey its own: a worker whose name is held by another cluster (another API server CA) is not ready and reads no events.",
    parse: clusterName,
  }),
  dryRun: setting({
    env: "DRY_RUN",
    flag: "dry-run",
    modes: WORKER,
    show: true,
    boolean: true,
    default: "false",
    help: "Match and log what would be restarted, but patch nothing.",
    parse: bool,
  }),
  healthListenAddr: setting({
    env: "HEALTH_LISTEN_ADDR",
    flag: "health-listen-addr",
    modes: WORKER,
    show: true,
    default: ":8081",
    help: "Address for /healthz, /readyz and /metrics.",
    parse: parseListenAddr,
  }),
  dedupWindow: setting({
    env: "RESTART_DEDUP_WINDOW",
    flag: "restart-dedup-window",
    modes: WORKER,
    show: true,
    default: "5s",
    help:
      "After a restart, events for the same Deployment and image repository (any tag) within this window do not restart it again when that restart came after they were accepted: they follow its rollout and report its outcome (0s: off).",
    parse: duration,
  }),
  rolloutTimeout: setting({
    env: "ROLLOUT_TIMEOUT",
    flag: "rollout-timeout",
    modes: WORKER,
    show: true,
    default: "10m",
    help:
      "How long the worker follows each restarted Deployment's rollout for the event's status; not complete by then is timed_out (0s: no tracking, the report says only what was restarted).",
    parse: duration,
  }),
  rolloutBakeTime: setting({
    env: "ROLLOUT_BAKE_TIME",
    flag: "rollout-bake-time",
    modes: WORKER,
    show: true,
    default: "0s",
    help:
      "How long a restarted Deployment must stay healthy after its rollout looks complete (every replica available, no new spec change, Progressing not False) before it is reported complete; meanwhile it is baking. Counts within ROLLOUT_TIMEOUT: still baking then is timed_out. A Deployment's kuberollouttrigger/bake-time annotation overrides it (0s: no bake).",
    parse: duration,
  }),
  localInventory: setting({
    env: "LOCAL_INVENTORY",
    flag: "local-inventory",
    modes: WORKER,
    show: true,
    help:
      "Development only: a YAML file of Deployments used instead of a cluster; restarts are only logged. Cannot be combined with KUBECONFIG.",
    parse: text,
  }),
  eventVerifyKeys: setting({
    env: "EVENT_VERIFY_KEYS",
    flag: "event-verify-keys",
    modes: BOTH,
    help:
      "Ed25519 public keys (SPKI PEM blocks, JWK or JWK Set). Worker: drops messages none of them signed; unset, messages are unauthenticated. Web: also reads bindings they signed.",
    parse: parseVerifyKeys,
  }),
  reportSigningKey: setting({
    env: "REPORT_SIGNING_KEY",
    flag: "report-signing-key",
    modes: WORKER,
    help:
      "This cluster's own Ed25519 private key (PKCS#8 PEM or JWK, the value itself) that signs its reports; web with REPORT_VERIFY_KEYS reads only reports signed by the key it has for this CLUSTER_NAME. Secret.",
    parse: parseSigningKey,
  }),
  requireOptIn: setting({
    env: "REQUIRE_OPT_IN",
    flag: "require-opt-in",
    modes: WORKER,
    show: true,
    boolean: true,
    default: "false",
    help:
      "Restart only Deployments annotated kuberollouttrigger/allowed-repositories naming the event's sender; others are skipped as not_opted_in. Needs EVENT_VERIFY_KEYS (only a signed event says who sent it).",
    parse: bool,
  }),
  deploymentSelector: setting({
    env: "DEPLOYMENT_SELECTOR",
    flag: "deployment-selector",
    modes: WORKER,
    show: true,
    help:
      "Optional label selector (e.g. kuberollouttrigger/enabled=true): only Deployments it selects are listed and watched, so no other is ever matched or restarted.",
    parse: (raw) => raw.trim() === "" ? undefined : parseLabelSelector(raw),
  }),
  catchUpWindow: setting({
    env: "CATCH_UP_WINDOW",
    flag: "catch-up-window",
    modes: BOTH,
    show: true,
    default: "1h",
    help:
      "Worker: events older than this (web's time) when the cluster takes them up, after being away, are not restarted but reported as expired; signed ones outside it are dropped. Web: the event stream keeps twice this. Set the same on both.",
    parse: positiveDuration,
  }),
};

/** Problems with combinations of otherwise valid worker settings (beyond Valkey's). */
export function checkWorkerCombinations(
  config: Pick<
    ConfigOfRows<typeof WORKER_SETTINGS>,
    "localInventory" | "kubeconfig" | "requireOptIn" | "eventVerifyKeys"
  >,
): string[] {
  const problems: string[] = [];
  if (config.localInventory && config.kubeconfig) {
    problems.push(
      "LOCAL_INVENTORY (--local-inventory) and KUBECONFIG (--kubeconfig) exclude each other: choose one",
    );
  }
  if (config.requireOptIn && (config.eventVerifyKeys ?? []).length === 0) {
    problems.push(
      "REQUIRE_OPT_IN (--require-opt-in) needs EVENT_VERIFY_KEYS (--event-verify-keys): only a message web signed says which repository sent it",
    );
  }
  return problems;
}
