/**
 * Web's settings: listening, the OIDC audience and issuer, the claim rules,
 * token and key timing, status answers, dev mode and the signing key; and the
 * combinations among them that are refused.
 */

import {
  asciiLowerCase,
  isGitHubName,
  isLoopbackHost,
  parseListenAddr,
} from "../lib/setting_values.ts";
import { parseClusterKeys, parseSigningKey } from "../shared/event_keys.ts";
import { isOwnerName } from "../shared/event_sender.ts";
import { clusterName } from "./worker_settings.ts";
import { parseRepositoryRules } from "./repository_rules.ts";
import { parseNotifyStates, parseNotifyUrls } from "./notify_targets.ts";
import {
  bool,
  type ConfigOfRows,
  duration,
  listOf,
  positiveDuration,
  positiveInteger,
  setting,
  text,
  WEB,
} from "./setting.ts";

/** CLUSTERS: distinct cluster names, as many as a status record names (1000). */
function clusterList(raw: string): string[] {
  const names = [...new Set(listOf(clusterName)(raw))];
  if (names.length > 1000) throw new Error(`names ${names.length} clusters; at most 1000`);
  return names;
}

function numericId(item: string): string {
  // Security: GitHub sends IDs as strings; compare as strings, never as numbers.
  if (!/^[0-9]{1,20}$/.test(item)) throw new Error(`"${item}" is not a numeric ID`);
  return item;
}

function githubOwner(item: string): string {
  if (!isGitHubName(item)) {
    throw new Error(
      `"${item}" is not a GitHub organisation or user name (ASCII letters, digits, ".", "_", "-")`,
    );
  }
  return asciiLowerCase(item);
}

function ownerRepo(item: string): string {
  if (!isOwnerName(item)) throw new Error(`"${item}" is not owner/repo`);
  return asciiLowerCase(item);
}

/** Parses an issuer URL: https, or http on a loopback host (tests and dev only). */
export function parseIssuer(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new Error("must be a URL such as https://token.actions.githubusercontent.com");
  }
  if (url.username || url.password || url.search || url.hash) {
    throw new Error("must not contain credentials, a query or a fragment");
  }
  if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
    throw new Error("must use https:// (plain http:// is only allowed on a loopback address)");
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("must use https://");
  // Security: compared byte for byte with the token's iss, so keep the text as given.
  return raw.trim();
}

/** Web's rows, in the order --help shows them. */
export const WEB_SETTINGS = {
  listenAddr: setting({
    env: "WEB_LISTEN_ADDR",
    flag: "listen-addr",
    modes: WEB,
    show: true,
    default: ":8080",
    help: "Address the HTTP server listens on (:8080 means every IPv4 interface).",
    parse: parseListenAddr,
  }),
  oidcAudience: setting({
    env: "GITHUB_OIDC_AUDIENCE",
    flag: "github-oidc-audience",
    modes: WEB,
    show: true,
    required: true,
    help: "Audience the workflow requests its token for; aud must be exactly this value.",
    parse: text,
  }),
  oidcIssuer: setting({
    env: "GITHUB_OIDC_ISSUER",
    flag: "github-oidc-issuer",
    modes: WEB,
    show: true,
    default: "https://token.actions.githubusercontent.com",
    help: "Token issuer; differs for GitHub Enterprise Server. Must be https://.",
    parse: parseIssuer,
  }),
  allowedOrgs: setting({
    env: "GITHUB_ALLOWED_ORG",
    flag: "github-allowed-org",
    modes: WEB,
    show: true,
    required: true,
    help:
      "Comma-separated organisations or users whose workflows may send events (repository_owner, any case).",
    parse: listOf(githubOwner),
  }),
  allowedRepositories: setting({
    env: "GITHUB_ALLOWED_REPOSITORIES",
    flag: "github-allowed-repositories",
    modes: WEB,
    show: true,
    help: "Optional comma-separated owner/repo list; when set, only these repositories (any case).",
    parse: listOf(ownerRepo),
  }),
  allowedRefs: setting({
    env: "GITHUB_ALLOWED_REFS",
    flag: "github-allowed-refs",
    modes: WEB,
    show: true,
    help: "Optional comma-separated refs, e.g. refs/heads/main; when set, ref must be one of them.",
    parse: listOf((item) => item),
  }),
  allowedEventNames: setting({
    env: "GITHUB_ALLOWED_EVENT_NAMES",
    flag: "github-allowed-event-names",
    modes: WEB,
    show: true,
    help: "Optional comma-separated workflow triggers, e.g. push,workflow_dispatch.",
    parse: listOf((item) => item),
  }),
  allowedEnvironments: setting({
    env: "GITHUB_ALLOWED_ENVIRONMENTS",
    flag: "github-allowed-environments",
    modes: WEB,
    show: true,
    help: "Optional comma-separated deployment environments; when set, the job must run in one.",
    parse: listOf((item) => item),
  }),
  allowedWorkflowRefs: setting({
    env: "GITHUB_ALLOWED_WORKFLOW_REFS",
    flag: "github-allowed-workflow-refs",
    modes: WEB,
    show: true,
    help:
      "Optional comma-separated workflow_ref values, e.g. acme/app/.github/workflows/build.yml@refs/heads/main.",
    parse: listOf((item) => item),
  }),
  allowedJobWorkflowRefs: setting({
    env: "GITHUB_ALLOWED_JOB_WORKFLOW_REFS",
    flag: "github-allowed-job-workflow-refs",
    modes: WEB,
    show: true,
    help: "Optional comma-separated job_workflow_ref values, for pinning a reusable workflow.",
    parse: listOf((item) => item),
  }),
  allowedOwnerIds: setting({
    env: "GITHUB_ALLOWED_OWNER_IDS",
    flag: "github-allowed-owner-ids",
    modes: WEB,
    show: true,
    help:
      "Optional comma-separated repository_owner_id values; pins orgs against rename and re-registration.",
    parse: listOf(numericId),
  }),
  allowedRepositoryIds: setting({
    env: "GITHUB_ALLOWED_REPOSITORY_IDS",
    flag: "github-allowed-repository-ids",
    modes: WEB,
    show: true,
    help: "Optional comma-separated repository_id values.",
    parse: listOf(numericId),
  }),
  repositoryRules: setting({
    env: "REPOSITORY_RULES",
    flag: "repository-rules",
    modes: WEB,
    help:
      "Optional rules of which repository may name which images, separated by new lines or ';': `<subject> [ref=|environment=|workflow=<value>] -> <image>[,<image>…]`. Subject: owner/name, owner/* or id:<repository_id>; a value ending in * matches by prefix. An image allows itself and what lies below it on a path boundary; a whole component * matches one component, {repository} the sender's owner/name. With rules set, an event whose image no rule gives its repository is refused (403). E.g. `acme/* -> ghcr.io/{repository}` (docs/security.md).",
    parse: parseRepositoryRules,
  }),
  maxTokenAge: setting({
    env: "GITHUB_OIDC_MAX_TOKEN_AGE",
    flag: "github-oidc-max-token-age",
    modes: WEB,
    show: true,
    default: "10m",
    help: "Tokens issued (iat) longer ago than this are refused, whatever their exp.",
    parse: positiveDuration,
  }),
  clockTolerance: setting({
    env: "GITHUB_OIDC_CLOCK_TOLERANCE",
    flag: "github-oidc-clock-tolerance",
    modes: WEB,
    show: true,
    default: "15s",
    help: "Allowed clock skew when checking exp, nbf and iat.",
    parse: duration,
  }),
  jwksCooldown: setting({
    env: "GITHUB_OIDC_JWKS_COOLDOWN",
    flag: "github-oidc-jwks-cooldown",
    modes: WEB,
    show: true,
    default: "10s",
    help: "Least time between two fetches of the issuer's keys (an unknown kid triggers one).",
    parse: positiveDuration,
  }),
  jwksCacheTtl: setting({
    env: "GITHUB_OIDC_JWKS_CACHE_TTL",
    flag: "github-oidc-jwks-cache-ttl",
    modes: WEB,
    show: true,
    default: "1h",
    help: "How long fetched keys are used before they are refreshed.",
    parse: positiveDuration,
  }),
  oidcHttpTimeout: setting({
    env: "GITHUB_OIDC_HTTP_TIMEOUT",
    flag: "github-oidc-http-timeout",
    modes: WEB,
    show: true,
    default: "5s",
    help: "Bound on each request to the issuer (discovery document, keys).",
    parse: positiveDuration,
  }),
  statusTtl: setting({
    env: "STATUS_TTL",
    flag: "status-ttl",
    modes: WEB,
    show: true,
    default: "1h",
    help:
      "How long an event's rollout-feedback record (GET /event/<id>) is kept in Valkey after web publishes it.",
    parse: positiveDuration,
  }),
  statusReportTimeout: setting({
    env: "STATUS_REPORT_TIMEOUT",
    flag: "status-report-timeout",
    modes: WEB,
    show: true,
    default: "30s",
    help:
      "How long after publishing a cluster that was live may take to report; after that it shows as no_report and the event as failed.",
    parse: positiveDuration,
  }),
  clusters: setting({
    env: "CLUSTERS",
    flag: "clusters",
    modes: WEB,
    show: true,
    help:
      "Comma-separated cluster names every event is for, instead of the clusters that registered; a listed cluster that never reports shows as no_report.",
    parse: clusterList,
  }),
  clusterForgetAfter: setting({
    env: "CLUSTER_FORGET_AFTER",
    flag: "cluster-forget-after",
    modes: WEB,
    show: true,
    default: "168h",
    help:
      "A registered cluster silent for this long is no longer one events are for (docs/operations.md: forgetting a cluster at once).",
    parse: positiveDuration,
  }),
  statusMaxWaiters: setting({
    env: "STATUS_MAX_WAITERS",
    flag: "status-max-waiters",
    modes: WEB,
    show: true,
    default: "1000",
    help:
      "Most GET /event/<id>?wait= requests held open at once, one repository at most a quarter of them; more are answered 429 with Retry-After.",
    parse: positiveInteger,
  }),
  devMode: setting({
    env: "DEV_MODE",
    flag: "dev-mode",
    modes: WEB,
    show: true,
    boolean: true,
    default: "false",
    help:
      "Local development only: replaces GitHub with an ephemeral local issuer whose tokens only loopback clients can mint. Never in production.",
    parse: bool,
  }),
  eventSigningKey: setting({
    env: "EVENT_SIGNING_KEY",
    flag: "event-signing-key",
    modes: WEB,
    help:
      "Ed25519 private key (PKCS#8 PEM or JWK, the value itself) that signs events and status bindings; workers with EVENT_VERIFY_KEYS drop what it did not sign. Secret.",
    parse: parseSigningKey,
  }),
  notifyUrls: setting({
    env: "NOTIFY_URLS",
    flag: "notify-urls",
    modes: WEB,
    help:
      "Webhook URLs (https, or http to a loopback host; comma or newline separated, at most 10) each told once when an event's outcome is final (docs/operations.md: Notifications). Treated as a secret: a URL's path may hold one (Slack's does); only scheme and host are logged.",
    parse: parseNotifyUrls,
  }),
  notifyStates: setting({
    env: "NOTIFY_STATES",
    flag: "notify-states",
    modes: WEB,
    show: true,
    help:
      "Comma-separated final states to notify (succeeded, failed, dry_run, skipped, no_match); unset: all of them.",
    parse: parseNotifyStates,
  }),
  notifyFormat: setting({
    env: "NOTIFY_FORMAT",
    flag: "notify-format",
    modes: WEB,
    show: true,
    default: "json",
    help:
      'json: the event, its run and each cluster\'s outcome, signed with NOTIFY_SECRET; slack: a Slack-compatible {"text": …} summary.',
    parse: (raw) => {
      if (raw !== "json" && raw !== "slack") throw new Error("must be json or slack");
      return raw;
    },
  }),
  notifySecret: setting({
    env: "NOTIFY_SECRET",
    flag: "notify-secret",
    modes: WEB,
    help:
      "Shared secret that signs each notification (X-Kuberollouttrigger-Signature-256: HMAC-SHA256 over the timestamp and the exact body); at least 32 characters. Required with NOTIFY_URLS in the json format. Secret.",
    parse: (raw) => {
      if (raw !== "" && raw.length < 32) throw new Error("must be at least 32 characters");
      return raw;
    },
  }),
  reportVerifyKeys: setting({
    env: "REPORT_VERIFY_KEYS",
    flag: "report-verify-keys",
    modes: WEB,
    help:
      "Each worker cluster's Ed25519 public key as <CLUSTER_NAME>=<key>, separated by commas or new lines (the key: the base64 line of `openssl pkey -pubout`, or a JWK's x; a cluster named twice has two keys while rotating). Web then ignores reports their cluster did not sign with REPORT_SIGNING_KEY, and every event waits for these clusters (or CLUSTERS). Needs EVENT_SIGNING_KEY.",
    parse: (raw) => parseClusterKeys(raw, clusterName),
  }),
};

/** Problems with combinations of otherwise valid web settings (beyond Valkey's). */
export function checkWebCombinations(
  config:
    & Pick<
      ConfigOfRows<typeof WEB_SETTINGS>,
      | "devMode"
      | "listenAddr"
      | "reportVerifyKeys"
      | "eventSigningKey"
      | "clusters"
      | "repositoryRules"
      | "notifyUrls"
      | "notifyFormat"
      | "notifySecret"
      | "statusTtl"
      | "statusReportTimeout"
    >
    & { allowedImagePrefixes: readonly string[] },
): string[] {
  const problems: string[] = [];
  const notifying = (config.notifyUrls ?? []).length > 0;
  if (notifying && config.statusTtl <= config.statusReportTimeout) {
    problems.push(
      "NOTIFY_URLS (--notify-urls) needs STATUS_TTL (--status-ttl) longer than STATUS_REPORT_TIMEOUT (--status-report-timeout): an event that times out must still have its record to be notified",
    );
  }
  if (notifying && config.notifyFormat === "json" && !config.notifySecret) {
    problems.push(
      "NOTIFY_URLS (--notify-urls) in the json format needs NOTIFY_SECRET (--notify-secret): receivers must be able to tell web's notifications from anyone's",
    );
  }
  for (const problem of config.repositoryRules?.unreachable(config.allowedImagePrefixes) ?? []) {
    problems.push(`REPOSITORY_RULES (--repository-rules): ${problem}`);
  }
  const reportKeys = config.reportVerifyKeys ?? new Map();
  if (reportKeys.size > 0 && !config.eventSigningKey) {
    problems.push(
      "REPORT_VERIFY_KEYS (--report-verify-keys) needs EVENT_SIGNING_KEY: web signs the list of clusters each event waits for, so Valkey write access cannot drop one",
    );
  }
  const keyless = reportKeys.size > 0
    ? (config.clusters ?? []).filter((c) => !reportKeys.has(c))
    : [];
  if (keyless.length > 0) {
    problems.push(
      `CLUSTERS (--clusters) names clusters without a key in REPORT_VERIFY_KEYS: ${
        keyless.join(", ")
      }; their reports could never be read — add their keys or remove them`,
    );
  }
  if (config.devMode && !isLoopbackHost(config.listenAddr.host)) {
    problems.push(
      "DEV_MODE (--dev-mode) needs a loopback WEB_LISTEN_ADDR such as 127.0.0.1:8080: dev tokens must never be reachable from another machine",
    );
  }
  return problems;
}
