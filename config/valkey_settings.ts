/**
 * The Valkey settings both modes share (one server or Sentinels, ACL user,
 * TLS, timeouts; the CA file is the worker's) and the combinations among
 * them that are refused.
 */

import {
  parseHostPort,
  parseList,
  parsePemCertificates,
  parsePemPrivateKey,
} from "../lib/setting_values.ts";
import type { ValkeySettings } from "../shared/valkey_settings.ts";
import {
  bool,
  BOTH,
  type ConfigOfRows,
  positiveDuration,
  setting,
  settingName,
  text,
  WORKER,
} from "./setting.ts";

function channel(raw: string): string {
  const v = raw.trim();
  if (!/^[\x21-\x7e]{1,256}$/.test(v)) {
    throw new Error("must be 1-256 printable characters without spaces");
  }
  return v;
}

/** A comma-separated list of host:port. */
function hostPortList(raw: string) {
  return parseList(raw).map((item) => {
    try {
      return parseHostPort(item);
    } catch (err) {
      throw new Error(`"${item}": ${(err as Error).message}`);
    }
  });
}

/** The VALKEY_* rows, in the order --help shows them. */
export const VALKEY_SETTINGS = {
  valkeyAddr: setting({
    env: "VALKEY_ADDR",
    flag: "valkey-addr",
    modes: BOTH,
    show: true,
    required: true,
    unless: ["valkeySentinels", "valkeyClusterNodes"],
    help:
      "Valkey server as host:port (IPv6 as [::1]:6379). Required unless VALKEY_SENTINELS or VALKEY_CLUSTER_NODES is set; then it must be unset.",
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
    parse: hostPortList,
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
  valkeyClusterNodes: setting({
    env: "VALKEY_CLUSTER_NODES",
    flag: "valkey-cluster-nodes",
    modes: BOTH,
    show: true,
    help:
      "Comma-separated nodes of a Valkey Cluster as host:port (a managed service's configuration endpoint is one); when set, both modes run in cluster mode: the slot map is asked of them, commands go to the primary of their slot, and MOVED, ASK and failovers are followed. Instead of VALKEY_ADDR.",
    parse: hostPortList,
  }),
};

/** What the Valkey rows parse to. */
export type ValkeyConfig = ConfigOfRows<typeof VALKEY_SETTINGS>;
// The connection settings the clients take (shared/valkey_settings.ts) must be what these rows
// parse to: a row renamed or retyped here fails the type check instead of drifting apart.
const _rowsFitTheClients = (config: ValkeyConfig): ValkeySettings => config;

/** Problems with combinations of otherwise valid Valkey settings. */
export function checkValkeyCombinations(
  config: Pick<ValkeyConfig, Exclude<keyof ValkeyConfig, "valkeyTlsCaFile">>,
): string[] {
  const problems: string[] = [];
  const name = (key: keyof typeof VALKEY_SETTINGS) => settingName(VALKEY_SETTINGS[key]);
  const sentinels = config.valkeySentinels.length > 0;
  if (sentinels && config.valkeyAddr) {
    problems.push(
      `${name("valkeyAddr")} and ${
        name("valkeySentinels")
      } exclude each other: with Sentinel the primary's address comes from the Sentinels`,
    );
  }
  const cluster = config.valkeyClusterNodes.length > 0;
  if (cluster && config.valkeyAddr) {
    problems.push(
      `${name("valkeyAddr")} and ${
        name("valkeyClusterNodes")
      } exclude each other: in cluster mode the nodes come from the cluster's slot map`,
    );
  }
  if (cluster && sentinels) {
    problems.push(
      `${name("valkeySentinels")} and ${
        name("valkeyClusterNodes")
      } exclude each other: a Valkey Cluster fails over by itself, without Sentinel`,
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

/** Problems with the worker's CA file (VALKEY_TLS_CA_FILE), a Valkey row web does not have. */
export function checkValkeyCaFileCombinations(
  config: Pick<ValkeyConfig, "valkeyTls" | "valkeyTlsCaCert" | "valkeyTlsCaFile">,
): string[] {
  const problems: string[] = [];
  const name = (key: keyof typeof VALKEY_SETTINGS) => settingName(VALKEY_SETTINGS[key]);
  if (!config.valkeyTls && config.valkeyTlsCaFile) {
    problems.push(`${name("valkeyTlsCaFile")} needs ${name("valkeyTls")} set to true`);
  }
  if (config.valkeyTlsCaCert && config.valkeyTlsCaFile) {
    problems.push(
      `${name("valkeyTlsCaCert")} and ${name("valkeyTlsCaFile")} exclude each other: choose one`,
    );
  }
  return problems;
}
