/**
 * Opening a connection to one Valkey node: TCP or TLS within VALKEY_TIMEOUT
 * (the handshake included), then AUTH as the ACL user and CLIENT SETNAME.
 * Failures become one line naming the address, never what the server sent:
 * a socket or TLS failure as a ConnectError with a Node-style code, so
 * shared/valkey_errors.ts has one piece of advice per cause.
 *
 * TLS verifies the server's certificate against the name or IP address
 * connected to (also one a Sentinel or a cluster node announces), with
 * VALKEY_TLS_CA_CERT added to the roots Deno trusts, and the client
 * certificate when one is set.
 */

import type { HostPort } from "../lib/setting_values.ts";
import { formatHostPort, type ValkeySettings } from "./valkey_settings.ts";
import { ConnectError, Session, TimeoutError } from "./valkey_session.ts";

/** What Deno.connectTls takes besides the address. */
export type TlsOptions = { caCerts?: string[] } | { caCerts?: string[]; cert: string; key: string };

/** TLS options for Deno.connectTls, or undefined without TLS. */
export function tlsOptions(settings: ValkeySettings): TlsOptions | undefined {
  if (!settings.valkeyTls) return undefined;
  const caCerts = settings.valkeyTlsCaCert ? [settings.valkeyTlsCaCert] : undefined;
  if (settings.valkeyTlsClientCert && settings.valkeyTlsClientKey) {
    return { caCerts, cert: settings.valkeyTlsClientCert, key: settings.valkeyTlsClientKey };
  }
  return { caCerts };
}

// rustls's verdicts, as Deno reports them, under the names Node gives the same
// verdicts: describeConnectionError has one piece of advice for each.
const TLS_VERDICTS: [RegExp, string][] = [
  [/not valid for name|NotValidForName/, "ERR_TLS_CERT_ALTNAME_INVALID"],
  [/UnknownIssuer|BadSignature|UnsupportedSignatureAlgorithm/, "UNABLE_TO_VERIFY_LEAF_SIGNATURE"],
  [/\bExpired\b/, "CERT_HAS_EXPIRED"],
  [/NotValidYet/, "CERT_NOT_YET_VALID"],
  [
    /CertificateRequired|HandshakeFailure|BadCertificate|UnknownCA|DecryptError/,
    "HANDSHAKE_FAILURE",
  ],
];

/** A socket or TLS failure as a ConnectError naming the address, never anything the server sent. */
function connectError(err: unknown, target: HostPort): ConnectError {
  if (err instanceof ConnectError) return err;
  const message = err instanceof Error ? err.message : String(err);
  for (const [pattern, code] of TLS_VERDICTS) {
    if (pattern.test(message)) return new ConnectError(`TLS ${code}`, code);
  }
  if (/failed to lookup address/i.test(message)) {
    return new ConnectError(`getaddrinfo ENOTFOUND ${target.host}`, "ENOTFOUND");
  }
  const code = String((err as { code?: unknown })?.code ?? "") ||
    (err instanceof Error ? err.name : "error");
  return new ConnectError(`connect ${code} ${formatHostPort(target)}`, code);
}

/** Errors of Deno's own sockets, as opposed to the ones this client makes. */
function isSocketError(err: unknown): boolean {
  return Object.values(Deno.errors).some((type) => err instanceof type);
}

/** An error from opening a connection, as one line to log: ours as made, Deno's as a ConnectError. */
export function openError(err: unknown, target: HostPort): unknown {
  return isSocketError(err) ? connectError(err, target) : err;
}

/**
 * A connection attempt still running after its timeout. Deno cannot abort a TLS
 * handshake the server never answers (closing the socket leaves it open until
 * the peer acts), so a client keeps at most one such attempt and waits for it
 * instead of opening a socket per retry.
 */
export interface Stuck {
  attempt?: Promise<unknown>;
}

/** Resolves with `promise`, or rejects with ETIMEDOUT after `ms` (closing what arrives late). */
function within<T extends { close(): void }>(
  promise: Promise<T>,
  ms: number,
  target: HostPort,
  stuck: Stuck,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const settled = promise.then((late) => late.close(), () => {});
      stuck.attempt = settled.finally(() => {
        if (stuck.attempt === settled) stuck.attempt = undefined;
      });
      reject(new ConnectError(`connect ETIMEDOUT ${formatHostPort(target)}`, "ETIMEDOUT"));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Opens a TCP or TLS connection within the timeout; the TLS handshake is part of it. */
export async function openSocket(
  target: HostPort,
  tls: TlsOptions | undefined,
  timeoutMs: number,
  stuck: Stuck,
): Promise<Deno.Conn> {
  if (stuck.attempt) {
    const freed = await Promise.race([
      stuck.attempt.then(() => true),
      new Promise<false>((resolve) => setTimeout(() => resolve(false), timeoutMs)),
    ]);
    if (!freed) {
      throw new ConnectError(`connect ETIMEDOUT ${formatHostPort(target)}`, "ETIMEDOUT");
    }
  }
  const open = async () => {
    if (!tls) return await Deno.connect({ hostname: target.host, port: target.port });
    const conn = await Deno.connectTls({ hostname: target.host, port: target.port, ...tls });
    try {
      await conn.handshake();
    } catch (err) {
      conn.close();
      throw err;
    }
    return conn;
  };
  try {
    return await within(open(), timeoutMs, target, stuck);
  } catch (err) {
    throw connectError(err, target);
  }
}

/** AUTH as the ACL user (or the default user), or undefined when no password is set. */
export function authCommand(username: string | undefined, password: string | undefined) {
  if (!password) return undefined;
  return username ? ["AUTH", username, password] : ["AUTH", password];
}

/** What opening a session needs besides the address. */
export interface SessionOptions {
  settings: ValkeySettings;
  tls: TlsOptions | undefined;
  /** Shown in CLIENT LIST. */
  name: string;
  stuck: Stuck;
}

/**
 * Opens a session to one node, authenticated and named. A failure closes it
 * and throws: a reply (WRONGPASS, NOPERM) and our own errors as made, a failure
 * of the socket under the first commands (a TLS alert, a reset) as a ConnectError.
 */
export async function openSession(target: HostPort, options: SessionOptions): Promise<Session> {
  const { settings, tls } = options;
  const timeoutMs = settings.valkeyTimeout;
  const session = new Session(await openSocket(target, tls, timeoutMs, options.stuck), timeoutMs);
  try {
    // The first command, whatever it is: a TLS server waits for the rest of what
    // it takes for a TLS record and answers nothing at all.
    const auth = authCommand(settings.valkeyUsername, settings.valkeyPassword);
    const first = session.send(auth ?? ["CLIENT", "SETNAME", options.name]);
    await first.catch((err) => {
      if (err instanceof TimeoutError && !tls) {
        throw new ConnectError(`no reply from ${formatHostPort(target)}`, "ENOREPLY");
      }
      throw err;
    });
    if (auth) await session.send(["CLIENT", "SETNAME", options.name]);
    return session;
  } catch (err) {
    session.close();
    throw openError(err, target);
  }
}
