/**
 * The one table of settings. Parsing (env var, 1:1 flag), `--help`, the
 * startup summary and docs/configuration.md all come from SETTINGS, so a
 * setting cannot exist in one place and be missing from another. Input is the
 * process environment and argv: untrusted until each parser accepts it.
 */

import { parseSigningKey, parseVerifyKeys } from "../shared/event_keys.ts";
import { parseImagePrefix } from "../shared/image_ref.ts";
import { LOG_LEVELS, type LogLevel } from "../lib/log.ts";
import {
  asciiLowerCase,
  formatDuration,
  isGitHubName,
  isLoopbackHost,
  parseBool,
  parseDuration,
  parseHostPort,
  parseList,
  parseListenAddr,
  parsePemCertificates,
  parsePemPrivateKey,
} from "../lib/setting_values.ts";

/** The two long-running modes. */
export type Mode = "web" | "worker";

/** One setting: where it comes from, how it parses, how it is documented. */
export interface Setting<T, M extends readonly Mode[] = readonly Mode[]> {
  env: string;
  flag: string;
  modes: M;
  /** Raw default, parsed like user input; "" means unset. */
  default: string;
  required: boolean;
  /** `required` is waived when this other setting is given (VALKEY_ADDR with VALKEY_SENTINELS). */
  unless?: string;
  /**
   * Security: the startup summary prints a value only when its setting opts in
   * here (an allow-list); every other setting is shown as set or unset.
   */
  show: boolean;
  boolean: boolean;
  help: string;
  parse: (raw: string) => T;
}

type Options<T, M extends readonly Mode[]> =
  & Omit<Setting<T, M>, "required" | "show" | "boolean" | "default">
  & {
    default?: string;
    required?: boolean;
    show?: boolean;
    boolean?: boolean;
  };

// The modes stay a literal type, so WebConfig and WorkerConfig can be derived from the table.
function setting<T, const M extends readonly Mode[]>(options: Options<T, M>): Setting<T, M> {
  return { required: false, show: false, boolean: false, default: "", ...options };
}

const BOTH = ["web", "worker"] as const;
const WEB = ["web"] as const;
const WORKER = ["worker"] as const;

const text = (raw: string) => raw.trim();
const bool = (raw: string) => raw === "" ? false : parseBool(raw);
const duration = (raw: string) => parseDuration(raw);
const positiveDuration = (raw: string) => {
  const ms = parseDuration(raw);
  if (ms <= 0) throw new Error("must be greater than zero");
  return ms;
};

const positiveInteger = (raw: string) => {
  const v = raw.trim();
  if (!/^[0-9]{1,9}$/.test(v) || Number(v) === 0) throw new Error("must be a whole number above 0");
  return Number(v);
};

function listOf(check: (item: string) => string): (raw: string) => string[] {
  return (raw) => parseList(raw).map(check);
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
  const [owner, name, ...rest] = item.split("/");
  if (name === undefined || rest.length > 0 || !isGitHubName(owner) || !isGitHubName(name)) {
    throw new Error(`"${item}" is not owner/repo`);
  }
  return asciiLowerCase(item);
}

function namespace(item: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(item)) {
    throw new Error(`"${item}" is not a valid namespace name`);
  }
  return item;
}

function clusterName(raw: string): string {
  const v = raw.trim();
  if (!/^[A-Za-z0-9._-]{1,63}$/.test(v)) {
    throw new Error("must be 1-63 letters, digits, '.', '_' or '-'");
  }
  return v;
}

function logLevel(raw: string): LogLevel {
  const v = raw.trim().toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(v)) {
    throw new Error(`must be one of ${LOG_LEVELS.join(", ")}`);
  }
  return v as LogLevel;
}

function channel(raw: string): string {
  const v = raw.trim();
  if (!/^[\x21-\x7e]{1,256}$/.test(v)) {
    throw new Error("must be 1-256 printable characters without spaces");
  }
  return v;
}

function prefixes(raw: string): string[] {
  return parseList(raw).map((item) => {
    try {
      return parseImagePrefix(item);
    } catch (err) {
      throw new Error(`"${item}" ${(err as Error).message}`);
    }
  });
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

/** Every setting of the product. Keys are the config field names. */
export const SETTINGS = {
  logLevel: setting({
    env: "LOG_LEVEL",
    flag: "log-level",
    modes: BOTH,
    show: true,
    default: "info",
    help: "Lowest level logged: debug, info, warn or error.",
    parse: logLevel,
  }),
  valkeyAddr: setting({
    env: "VALKEY_ADDR",
    flag: "valkey-addr",
    modes: BOTH,
    show: true,
    required: true,
    unless: "valkeySentinels",
    help:
      "Valkey server as host:port (IPv6 as [::1]:6379). Required unless VALKEY_SENTINELS is set; then it must be unset.",
    parse: (raw) => raw.trim() === "" ? undefined : parseHostPort(raw),
  }),
  valkeyChannel: setting({
    env: "VALKEY_CHANNEL",
    flag: "valkey-channel",
    modes: BOTH,
    show: true,
    default: "kuberollouttrigger",
    help: "PubSub channel events are published to and read from.",
    parse: channel,
  }),
  valkeyUsername: setting({
    env: "VALKEY_USERNAME",
    flag: "valkey-username",
    modes: BOTH,
    show: true,
    help: "ACL user name for Valkey (optional).",
    parse: text,
  }),
  valkeyPassword: setting({
    env: "VALKEY_PASSWORD",
    flag: "valkey-password",
    modes: BOTH,
    help: "Password for Valkey (optional). Prefer the env var: flags show up in process lists.",
    parse: (raw) => raw,
  }),
  valkeyTls: setting({
    env: "VALKEY_TLS_ENABLED",
    flag: "valkey-tls",
    modes: BOTH,
    show: true,
    boolean: true,
    default: "false",
    help:
      "Connect to Valkey (and to the Sentinels) over TLS, verifying the certificate against Deno's root CAs and VALKEY_TLS_CA_CERT when set.",
    parse: bool,
  }),
  valkeyTimeout: setting({
    env: "VALKEY_TIMEOUT",
    flag: "valkey-timeout",
    modes: BOTH,
    show: true,
    default: "5s",
    help: "Bound on connecting to Valkey and on each command.",
    parse: positiveDuration,
  }),
  valkeyTlsCaCert: setting({
    env: "VALKEY_TLS_CA_CERT",
    flag: "valkey-tls-ca-cert",
    modes: BOTH,
    help:
      "PEM of the CA (or a bundle of CAs) that signed Valkey's certificate, as the value itself; trusted in addition to Deno's root CAs, which Deno does not let a program drop. Needs VALKEY_TLS_ENABLED.",
    parse: (raw) => raw.trim() === "" ? "" : parsePemCertificates(raw),
  }),
  valkeyTlsCaFile: setting({
    env: "VALKEY_TLS_CA_FILE",
    flag: "valkey-tls-ca-file",
    modes: WORKER,
    show: true,
    help:
      "Path of a PEM file of the CA (or CAs) that signed Valkey's certificate, read at startup. The worker may read only under /etc/kuberollouttrigger (or what --allow-read grants), so mount it there. Instead of VALKEY_TLS_CA_CERT.",
    parse: text,
  }),
  valkeyTlsClientCert: setting({
    env: "VALKEY_TLS_CLIENT_CERT",
    flag: "valkey-tls-client-cert",
    modes: BOTH,
    help:
      "PEM of a client certificate (and its chain) for Valkey servers that require one (tls-auth-clients yes). Needs VALKEY_TLS_CLIENT_KEY.",
    parse: (raw) => raw.trim() === "" ? "" : parsePemCertificates(raw),
  }),
  valkeyTlsClientKey: setting({
    env: "VALKEY_TLS_CLIENT_KEY",
    flag: "valkey-tls-client-key",
    modes: BOTH,
    help:
      "PEM of the client certificate's private key, unencrypted. A secret: give it from a Secret via env, never as a flag.",
    parse: (raw) => raw.trim() === "" ? "" : parsePemPrivateKey(raw),
  }),
  valkeySentinels: setting({
    env: "VALKEY_SENTINELS",
    flag: "valkey-sentinels",
    modes: BOTH,
    show: true,
    help:
      "Comma-separated Sentinels as host:port; when set, the primary of VALKEY_SENTINEL_MASTER is asked of them (and followed through failovers) instead of VALKEY_ADDR.",
    parse: (raw) =>
      parseList(raw).map((item) => {
        try {
          return parseHostPort(item);
        } catch (err) {
          throw new Error(`"${item}": ${(err as Error).message}`);
        }
      }),
  }),
  valkeySentinelMaster: setting({
    env: "VALKEY_SENTINEL_MASTER",
    flag: "valkey-sentinel-master",
    modes: BOTH,
    show: true,
    help:
      "Name the Sentinels know the primary by (sentinel monitor <name> ...); needs VALKEY_SENTINELS.",
    parse: (raw) => raw.trim() === "" ? "" : channel(raw),
  }),
  valkeySentinelUsername: setting({
    env: "VALKEY_SENTINEL_USERNAME",
    flag: "valkey-sentinel-username",
    modes: BOTH,
    show: true,
    help:
      "ACL user name for the Sentinels themselves (optional; Sentinel auth is separate from Valkey's).",
    parse: text,
  }),
  valkeySentinelPassword: setting({
    env: "VALKEY_SENTINEL_PASSWORD",
    flag: "valkey-sentinel-password",
    modes: BOTH,
    help: "Password for the Sentinels themselves (optional). Prefer the env var.",
    parse: (raw) => raw,
  }),
  allowedImagePrefixes: setting({
    env: "ALLOWED_IMAGE_PREFIX",
    flag: "allowed-image-prefix",
    modes: BOTH,
    show: true,
    required: true,
    help:
      "Comma-separated image prefixes events may name, matched on a path boundary (ghcr.io/acme allows ghcr.io/acme/app, not ghcr.io/acme-evil/app).",
    parse: prefixes,
  }),
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
  statusMaxWaiters: setting({
    env: "STATUS_MAX_WAITERS",
    flag: "status-max-waiters",
    modes: WEB,
    show: true,
    default: "1000",
    help:
      "Most GET /event/<id>?wait= requests held open at once; more are answered 429 with Retry-After.",
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
  kubeconfig: setting({
    env: "KUBECONFIG",
    flag: "kubeconfig",
    modes: WORKER,
    show: true,
    help:
      "Path of a kubeconfig file; empty means in-cluster config (service-account token and CA).",
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
      "Names this cluster in logs and in the Valkey keys that stop two replicas restarting twice; give each cluster sharing a Valkey its own.",
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
      "After a restart, events for the same Deployment and image repository (any tag) within this window do not restart it again (0s: off).",
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
  eventMaxAge: setting({
    env: "EVENT_MAX_AGE",
    flag: "event-max-age",
    modes: WORKER,
    show: true,
    default: "2m",
    help:
      "With EVENT_VERIFY_KEYS: signed messages whose time (web's clock) is older than this when the worker takes them up are dropped; messages more than 30s ahead are too.",
    parse: positiveDuration,
  }),
};

/** Names of all settings. */
export type SettingKey = keyof typeof SETTINGS;
type Table = typeof SETTINGS;
/** Names of the settings that apply to mode M. */
export type ModeKey<M extends Mode> = {
  [K in SettingKey]: M extends Table[K]["modes"][number] ? K : never;
}[SettingKey];
type ConfigOf<K extends SettingKey> = { [P in K]: ReturnType<Table[P]["parse"]> };
/** The settings both modes have (Valkey, logging, image prefixes). */
export type SharedConfig = ConfigOf<ModeKey<"web"> & ModeKey<"worker">>;
/** The parsed settings of mode M: only those the table gives that mode. */
export type ModeConfig<M extends Mode> = SharedConfig & ConfigOf<ModeKey<M>>;
/** What web mode runs on. */
export type WebConfig = ModeConfig<"web">;
/** What worker mode runs on. */
export type WorkerConfig = ModeConfig<"worker">;

/** The settings that apply to `mode`, in table order. */
export function settingsFor(mode: Mode): [SettingKey, Setting<unknown>][] {
  return (Object.entries(SETTINGS) as [SettingKey, Setting<unknown>][])
    .filter(([, s]) => s.modes.includes(mode));
}

/** How problems name a setting: its env var and flag. */
function settingName(key: SettingKey): string {
  return `${SETTINGS[key].env} (--${SETTINGS[key].flag})`;
}

/** Problems with combinations of otherwise valid web settings. */
export function checkWebCombinations(config: WebConfig): string[] {
  const problems: string[] = [];
  if (config.devMode && !isLoopbackHost(config.listenAddr.host)) {
    problems.push(
      "DEV_MODE (--dev-mode) needs a loopback WEB_LISTEN_ADDR such as 127.0.0.1:8080: dev tokens must never be reachable from another machine",
    );
  }
  problems.push(...checkValkeyCombinations(config));
  return problems;
}

/** Problems with combinations of otherwise valid worker settings. */
export function checkWorkerCombinations(config: WorkerConfig): string[] {
  const problems = checkValkeyCombinations(config);
  if (!config.valkeyTls && config.valkeyTlsCaFile) {
    problems.push(
      `${settingName("valkeyTlsCaFile")} needs ${settingName("valkeyTls")} set to true`,
    );
  }
  if (config.valkeyTlsCaCert && config.valkeyTlsCaFile) {
    problems.push(
      `${settingName("valkeyTlsCaCert")} and ${
        settingName("valkeyTlsCaFile")
      } exclude each other: choose one`,
    );
  }
  if (config.localInventory && config.kubeconfig) {
    problems.push(
      "LOCAL_INVENTORY (--local-inventory) and KUBECONFIG (--kubeconfig) exclude each other: choose one",
    );
  }
  return problems;
}

function checkValkeyCombinations(config: SharedConfig): string[] {
  const problems: string[] = [];
  const name = settingName;
  const sentinels = config.valkeySentinels.length > 0;
  if (sentinels && config.valkeyAddr) {
    problems.push(
      `${name("valkeyAddr")} and ${
        name("valkeySentinels")
      } exclude each other: with Sentinel the primary's address comes from the Sentinels`,
    );
  }
  if (sentinels && !config.valkeySentinelMaster) {
    problems.push(`${name("valkeySentinelMaster")} is required with ${name("valkeySentinels")}`);
  }
  for (
    const key of [
      "valkeySentinelMaster",
      "valkeySentinelUsername",
      "valkeySentinelPassword",
    ] as const
  ) {
    if (!sentinels && config[key]) problems.push(`${name(key)} needs ${name("valkeySentinels")}`);
  }
  for (const key of ["valkeyTlsCaCert", "valkeyTlsClientCert", "valkeyTlsClientKey"] as const) {
    if (!config.valkeyTls && config[key]) {
      problems.push(`${name(key)} needs ${name("valkeyTls")} set to true`);
    }
  }
  if (Boolean(config.valkeyTlsClientCert) !== Boolean(config.valkeyTlsClientKey)) {
    problems.push(
      `${name("valkeyTlsClientCert")} and ${
        name("valkeyTlsClientKey")
      } go together: give both or neither`,
    );
  }
  return problems;
}

/** Describes a setting's default for help and docs. */
export function describeDefault(s: Setting<unknown>): string {
  if (s.required) return "required";
  if (s.default === "") return "unset";
  return s.default;
}

export { formatDuration };
