/**
 * The credentials an exec plugin provides, as every request needs them: run
 * once and reused until a little before they expire, run once however many
 * requests need them at the same moment (single flight), and run again when
 * the API server refuses them (401), as client-go's exec authenticator does.
 * A client certificate from the plugin gets its own HTTP client (the cluster's
 * CA and that certificate); the one before it is kept for requests still under
 * way, older ones are closed.
 *
 * Trusts the plugin's output only after exec_credential.ts checked its shape
 * and credentials.ts its token and PEM. Security: the credentials never reach
 * a log line; the log says when they were obtained, their kind and expiry, and
 * the plugin's stderr as one bounded line with the credentials redacted.
 */

import type { Logger } from "../../lib/log.ts";
import { checkPem, checkToken, createTlsClient, type KubeCredentials } from "./credentials.ts";
import { commandName, type ExecPlugin, parseExecCredential } from "./exec_credential.ts";
import { oneLine, type PluginOutput, pluginSecrets } from "./exec_plugin.ts";

/** Credentials are renewed this long before they expire (at most a quarter of their lifetime). */
export const RENEW_BEFORE_MS = 30_000;
/** Credentials are reused at least this long, even when they say they have already expired. */
const MIN_REUSE_MS = 1_000;

/** Options for createExecSource. */
export interface ExecSourceOptions {
  plugin: ExecPlugin;
  /** Runs the plugin once (exec_plugin.ts's runExecPlugin). */
  run: (plugin: ExecPlugin) => Promise<PluginOutput>;
  /** The cluster's CA, for clients with the plugin's certificate. */
  ca?: { pem: string; field: string };
  /** The client for token credentials: the cluster's CA, no client certificate. */
  baseClient: Deno.HttpClient;
  now: () => number;
  logger?: Logger;
}

/** Credentials from an exec plugin. */
export interface ExecSource {
  /** The current credentials, running the plugin when there are none or they are due. */
  credentials(): Promise<KubeCredentials>;
  /**
   * After the API server answered 401 to `refused`: the plugin runs again,
   * unless another request already renewed them, and the new ones are returned.
   */
  renew(refused: KubeCredentials): Promise<KubeCredentials>;
}

/** Creates the source; nothing runs until credentials() is first called. */
export function createExecSource(options: ExecSourceOptions): ExecSource {
  const { plugin, now } = options;
  const name = `Exec plugin ${commandName(plugin.command)}`;
  let cached: { credentials: KubeCredentials; renewAt: number } | undefined;
  let running: Promise<KubeCredentials> | undefined;
  const clients: Deno.HttpClient[] = [];

  async function obtain(): Promise<KubeCredentials> {
    const output = await options.run(plugin);
    const obtainedAt = now();
    const credential = parseExecCredential(output.stdout, plugin);
    const token = credential.token === undefined
      ? undefined
      : checkToken(credential.token, `The token from ${name}`);
    let httpClient = options.baseClient;
    if (credential.clientCertificate !== undefined && credential.clientKey !== undefined) {
      const cert = {
        pem: credential.clientCertificate,
        field: `${name} status.clientCertificateData`,
      };
      const key = { pem: credential.clientKey, field: `${name} status.clientKeyData` };
      checkPem(cert.pem, cert.field, "certificate");
      checkPem(key.pem, key.field, "private key");
      httpClient = createTlsClient({ ca: options.ca, cert, key });
      clients.push(httpClient);
      // The previous client may still carry a watch; the one before it has had a lifetime.
      while (clients.length > 2) clients.shift()!.close();
    }
    const secrets = [token, credential.clientKey, credential.clientCertificate]
      .flatMap((s) => s?.split(/\r?\n/) ?? []).filter((s) => s.length >= 16);
    if (token) secrets.push(token);
    secrets.push(...pluginSecrets(plugin));
    if (output.stderr.trim()) {
      options.logger?.warn("the exec plugin wrote to stderr", {
        command: plugin.command,
        stderr: oneLine(output.stderr, secrets),
      });
    }
    const { expiresAt } = credential;
    let renewAt = Infinity;
    if (expiresAt !== undefined) {
      const margin = Math.min(RENEW_BEFORE_MS, Math.max(0, (expiresAt - obtainedAt) / 4));
      renewAt = Math.max(expiresAt - margin, obtainedAt + MIN_REUSE_MS);
    }
    const credentials: KubeCredentials = {
      authorization: token === undefined ? undefined : `Bearer ${token}`,
      httpClient,
    };
    cached = { credentials, renewAt };
    options.logger?.info("kubernetes credentials from the exec plugin", {
      command: plugin.command,
      auth: httpClient === options.baseClient ? "token" : "client certificate",
      expires: expiresAt === undefined ? "not stated" : new Date(expiresAt).toISOString(),
    });
    return credentials;
  }

  /** One run at a time: every caller meanwhile waits for the same run. */
  function refresh(): Promise<KubeCredentials> {
    running ??= obtain().finally(() => {
      running = undefined;
    });
    return running;
  }

  return {
    credentials() {
      if (cached && now() < cached.renewAt) return Promise.resolve(cached.credentials);
      return refresh();
    },
    renew(refused) {
      if (running) return running;
      if (cached && cached.credentials !== refused && now() < cached.renewAt) {
        return Promise.resolve(cached.credentials);
      }
      cached = undefined;
      return refresh();
    },
  };
}
