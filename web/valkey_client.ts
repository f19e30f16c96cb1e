/**
 * A Valkey client on Deno's own sockets, for web mode: commands pipelined on
 * one connection, or a subscriber connection that subscribes on every
 * connect. It takes the same settings as the worker's client (worker/valkey.ts)
 * and logs the same lines: connected, one "connection error" per distinct
 * cause, "lost; reconnecting" (warn) when a connection drops, "closed" (info)
 * when we close it. Web loads no npm client and no Node compatibility layer
 * for Valkey, which is most of what it weighed idle (docs/performance.md).
 *
 * Commands fail at once while disconnected, so web can answer 503 instead of
 * queueing an event nobody may see; each waits at most VALKEY_TIMEOUT for its
 * reply, at most 4096 wait on one connection, and a connection that answers
 * nothing for twice VALKEY_TIMEOUT is given up. Replies are bounded in size
 * and depth (lib/resp.ts). With Sentinel the primary is asked of the Sentinels given (never of
 * the peers they announce) and checked with ROLE before use. A primary the
 * Sentinels demote while it is still up is left too: they disconnect its
 * clients (CLIENT KILL) when they reconfigure it, and the next connect asks
 * them again.
 *
 * TLS verifies the server's certificate against the name or IP address
 * connected to (also one a Sentinel announces), with VALKEY_TLS_CA_CERT added
 * to the roots Deno trusts, and the client certificate when one is set.
 */

import { setImmediate } from "node:timers";
import { sleep } from "../lib/backoff.ts";
import type { Logger } from "../lib/log.ts";
import { commandText, ProtocolError, ReplyError, RespReader, type RespValue } from "../lib/resp.ts";
import type { HostPort } from "../lib/setting_values.ts";
import { describeConnectionError, describeValkeyError } from "../shared/valkey_errors.ts";
import {
  describeValkeyTarget,
  formatHostPort,
  reconnectDelay,
  type ValkeySettings,
} from "../shared/valkey_settings.ts";

/** Sends one command and resolves with its reply; an error reply rejects with a ReplyError. */
export interface ValkeyCommands {
  call(command: string, ...args: (string | number)[]): Promise<unknown>;
}

/** A command connection (call) or a subscriber (subscription in the options). */
export interface ValkeyClient extends ValkeyCommands {
  /** True between "valkey connected" and the connection's loss or close. */
  readonly connected: boolean;
  /** Closes the connection for good; pending commands reject. */
  disconnect(): void;
}

/** What a subscriber connection listens to. */
export interface ValkeySubscription {
  channels: string[];
  onMessage(channel: string, message: string): void;
}

/** Options for createValkeyClient. */
export interface ValkeyClientOptions {
  /** Shown in CLIENT LIST and in our logs. */
  name: string;
  logger: Logger;
  /** Reports every transition between connected and disconnected. */
  onStateChange?: (connected: boolean) => void;
  /** Makes this a subscriber: these channels are subscribed on every connect. */
  subscription?: ValkeySubscription;
}

/** A socket-level error with a Node-style code, so one table describes both clients' errors. */
class ConnectError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/** A command that got no reply within VALKEY_TIMEOUT. */
class TimeoutError extends Error {
  override name = "TimeoutError";
}

const encoder = new TextEncoder();

/** Most commands one connection holds unanswered; more fail at once (web answers 503). */
const MAX_PENDING = 4096;

interface Pending {
  resolve(value: RespValue): void;
  reject(err: Error): void;
  command: string;
  /** performance.now() after which it is answered with a TimeoutError. */
  deadline: number;
}

/** One open connection: writes batched in order, replies matched to commands in order. */
class Session {
  readonly #conn: Deno.Conn;
  readonly #reader = new RespReader();
  readonly #queue: Pending[] = [];
  #queueHead = 0;
  #out: string[] = [];
  #flushing = false;
  #closed = false;
  // One ticker per connection instead of a timer per command: every command
  // has the same timeout and replies come in order, so deadlines are in order
  // too and the oldest unanswered command is always the next to expire.
  #ticker?: ReturnType<typeof setInterval>;
  // Queue index up to which every command has been told it timed out.
  #expiredUpTo = 0;
  // Why we ended the session ourselves (a server that stopped answering).
  #abortReason?: Error;
  /** Resolves when the connection has ended, with why (undefined when we closed it). */
  readonly ended: Promise<Error | undefined>;
  onPush?: (value: RespValue) => void;

  constructor(conn: Deno.Conn, readonly timeoutMs: number) {
    this.#conn = conn;
    this.ended = this.#readLoop();
  }

  /** Sends a command; its reply (or an error) settles the promise. */
  send(args: readonly (string | number)[]): Promise<RespValue> {
    if (this.#closed) return Promise.reject(new Error("Valkey connection is closed"));
    if (this.#queue.length - this.#queueHead >= MAX_PENDING) {
      return Promise.reject(new Error(`${MAX_PENDING} commands are already waiting for Valkey`));
    }
    return new Promise<RespValue>((resolve, reject) => {
      // A command that timed out keeps its place in the queue: its reply, when it
      // comes, settles a promise already rejected, and the next reply stays in step.
      const deadline = performance.now() + this.timeoutMs;
      this.#queue.push({ resolve, reject, command: String(args[0]), deadline });
      this.#ticker ??= setInterval(
        () => this.#expire(),
        Math.max(10, Math.min(50, this.timeoutMs / 5)),
      );
      this.#out.push(commandText(args));
      this.#scheduleFlush();
    });
  }

  /**
   * Rejects the commands whose deadline has passed, oldest first; ends the
   * session when the oldest has waited twice VALKEY_TIMEOUT, so a server that
   * takes commands but never answers cannot make them pile up.
   */
  #expire(): void {
    const now = performance.now();
    let i = Math.max(this.#queueHead, this.#expiredUpTo);
    for (; i < this.#queue.length && this.#queue[i].deadline <= now; i++) {
      const pending = this.#queue[i];
      pending.reject(
        new TimeoutError(`Valkey did not answer ${pending.command} within VALKEY_TIMEOUT`),
      );
    }
    this.#expiredUpTo = i;
    const oldest = this.#queue[this.#queueHead];
    if (oldest && now - oldest.deadline > this.timeoutMs) {
      this.#abortReason = new TimeoutError(
        "Valkey stopped answering: no reply for twice VALKEY_TIMEOUT",
      );
      this.close();
    }
  }

  #stopTicker(): void {
    clearInterval(this.#ticker);
    this.#ticker = undefined;
  }

  /** Sends a command whose replies arrive as pushes (SUBSCRIBE); no reply is awaited here. */
  sendUnanswered(args: readonly (string | number)[]): void {
    this.#out.push(commandText(args));
    this.#scheduleFlush();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the other side.
    }
  }

  /** Rejects every command still waiting: the connection they were sent on is gone. */
  failPending(err: Error): void {
    for (let i = this.#queueHead; i < this.#queue.length; i++) this.#queue[i].reject(err);
    this.#queue.length = 0;
    this.#queueHead = 0;
    this.#expiredUpTo = 0;
    this.#stopTicker();
  }

  // Commands go out once the event loop's turn has run every callback and
  // promise job that was ready: the requests handled in one turn share one
  // write (and Valkey answers them with one), instead of a system call each.
  // setImmediate runs after the microtasks (setTimeout(0) would wait ~2 ms).
  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => this.#flush());
  }

  // Everything queued while a write was in flight goes out in one write too.
  async #flush(): Promise<void> {
    try {
      while (this.#out.length > 0 && !this.#closed) {
        const bytes = encoder.encode(this.#out.length === 1 ? this.#out[0] : this.#out.join(""));
        this.#out = [];
        let written = 0;
        while (written < bytes.length) written += await this.#conn.write(bytes.subarray(written));
      }
    } catch {
      // The read loop sees the same failure and ends the session.
      this.close();
    } finally {
      this.#flushing = false;
    }
  }

  async #readLoop(): Promise<Error | undefined> {
    const buf = new Uint8Array(64 * 1024);
    let why: Error | undefined;
    try {
      for (;;) {
        const n = await this.#conn.read(buf);
        if (n === null) {
          if (!this.#closed) why = new ConnectError("read ECONNRESET", "ECONNRESET");
          return why ?? this.#abortReason;
        }
        this.#reader.push(buf.subarray(0, n)); // the reader keeps its own copy
        for (let reply = this.#reader.next(); reply; reply = this.#reader.next()) {
          this.#dispatch(reply.value);
        }
      }
    } catch (err) {
      if (!this.#closed) why = err instanceof Error ? err : new Error(String(err));
      return why ?? this.#abortReason;
    } finally {
      why ??= this.#abortReason;
      this.close();
      // What ended the connection is what every command still waiting on it hears.
      this.failPending(why ?? new Error("Valkey connection is closed"));
    }
  }

  #dispatch(value: RespValue): void {
    if (this.onPush && Array.isArray(value) && value[0] === "message") {
      this.onPush(value);
      return;
    }
    const pending = this.#queue[this.#queueHead];
    if (!pending) {
      // A confirmation of a SUBSCRIBE sent without waiting; anything else is out of step.
      if (this.onPush) this.onPush(value);
      else throw new ProtocolError("a reply nobody asked for");
      return;
    }
    this.#queue[this.#queueHead++] = undefined as unknown as Pending;
    if (this.#queueHead === this.#queue.length) {
      this.#queue.length = 0;
      this.#queueHead = 0;
      this.#expiredUpTo = 0;
      this.#stopTicker();
    } else if (this.#queueHead > 1024 && this.#queueHead * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#queueHead);
      this.#expiredUpTo = Math.max(0, this.#expiredUpTo - this.#queueHead);
      this.#queueHead = 0;
    }
    if (value instanceof ReplyError) pending.reject(value);
    else pending.resolve(value);
  }
}

/** What Deno.connectTls takes besides the address. */
type TlsOptions = { caCerts?: string[] } | { caCerts?: string[]; cert: string; key: string };

/** TLS options for Deno.connectTls, or undefined without TLS. */
function tlsOptions(settings: ValkeySettings): TlsOptions | undefined {
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
function openError(err: unknown, target: HostPort): unknown {
  return isSocketError(err) ? connectError(err, target) : err;
}

/**
 * A connection attempt still running after its timeout. Deno cannot abort a TLS
 * handshake the server never answers (closing the socket leaves it open until
 * the peer acts), so a client keeps at most one such attempt and waits for it
 * instead of opening a socket per retry.
 */
interface Stuck {
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
async function openSocket(
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
function authCommand(username: string | undefined, password: string | undefined) {
  if (!password) return undefined;
  return username ? ["AUTH", username, password] : ["AUTH", password];
}

/** The primary the first Sentinel that knows it names. */
async function askSentinels(
  settings: ValkeySettings,
  tls: TlsOptions | undefined,
  stuck: Stuck,
  signal: AbortSignal,
): Promise<HostPort> {
  let last: unknown;
  for (const sentinel of settings.valkeySentinels ?? []) {
    if (signal.aborted) break;
    let session: Session | undefined;
    try {
      session = new Session(
        await openSocket(sentinel, tls, settings.valkeyTimeout, stuck),
        settings.valkeyTimeout,
      );
      const auth = authCommand(settings.valkeySentinelUsername, settings.valkeySentinelPassword);
      if (auth) await session.send(auth);
      const reply = await session.send([
        "SENTINEL",
        "get-master-addr-by-name",
        settings.valkeySentinelMaster ?? "",
      ]);
      const port = Array.isArray(reply) && /^\d{1,5}$/.test(String(reply[1]))
        ? Number(reply[1])
        : 0;
      if (Array.isArray(reply) && typeof reply[0] === "string" && port >= 1 && port <= 65535) {
        return { host: reply[0], port };
      }
      last = new Error(
        `Sentinel ${
          formatHostPort(sentinel)
        } does not know master ${settings.valkeySentinelMaster}`,
      );
    } catch (err) {
      last = openError(err, sentinel);
    } finally {
      session?.close();
    }
  }
  throw new Error(`All sentinels are unreachable. Last error: ${describeValkeyError(last)}`);
}

/**
 * Subscribes on a fresh connection and routes its messages; resolves once the
 * server confirmed every channel, rejects when it refuses one (an ACL without
 * the channel) or does not answer within the timeout.
 */
function subscribe(session: Session, subscription: ValkeySubscription): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let confirmed = 0;
    const timer = setTimeout(
      () => reject(new TimeoutError("Valkey did not confirm SUBSCRIBE within VALKEY_TIMEOUT")),
      session.timeoutMs,
    );
    // A connection that ends before the confirmation says why at once.
    session.ended.then((why) => {
      clearTimeout(timer);
      reject(why ?? new Error("Valkey connection is closed"));
    });
    session.onPush = (value) => {
      if (value instanceof ReplyError) {
        clearTimeout(timer);
        reject(value);
      } else if (Array.isArray(value) && value[0] === "message") {
        subscription.onMessage(String(value[1]), String(value[2]));
      } else if (Array.isArray(value) && value[0] === "subscribe") {
        if (++confirmed === subscription.channels.length) {
          clearTimeout(timer);
          resolve();
        }
      }
    };
    session.sendUnanswered(["SUBSCRIBE", ...subscription.channels]);
  });
}

/** Opens a client that connects in the background and reconnects until disconnect(). */
export function createValkeyClient(
  settings: ValkeySettings,
  options: ValkeyClientOptions,
): ValkeyClient {
  const tls = tlsOptions(settings);
  const sentinel = Boolean(settings.valkeySentinels?.length);
  const timeoutMs = settings.valkeyTimeout;
  const log = options.logger.child({
    valkey: describeValkeyTarget(settings),
    connection: options.name,
  });
  const stop = new AbortController();
  const stuck: Stuck = {};
  let session: Session | undefined;
  let connected = false;
  let lastError = "";

  const noteError = (err: unknown) => {
    const message = describeConnectionError(err, tls !== undefined);
    if (message !== lastError) log.warn("valkey connection error", { error: message });
    lastError = message;
  };

  /** Connects, authenticates and names the connection; with Sentinel, checks it is the primary. */
  const open = async (): Promise<{ session: Session; target: HostPort }> => {
    const target = sentinel
      ? await askSentinels(settings, tls, stuck, stop.signal)
      : settings.valkeyAddr!;
    const opened = new Session(await openSocket(target, tls, timeoutMs, stuck), timeoutMs);
    try {
      // The first command, whatever it is: a TLS server waits for the rest of what
      // it takes for a TLS record and answers nothing at all.
      const auth = authCommand(settings.valkeyUsername, settings.valkeyPassword);
      const first = opened.send(auth ?? ["CLIENT", "SETNAME", options.name]);
      await first.catch((err) => {
        if (err instanceof TimeoutError && !tls) {
          throw new ConnectError(`no reply from ${formatHostPort(target)}`, "ENOREPLY");
        }
        throw err;
      });
      if (auth) await opened.send(["CLIENT", "SETNAME", options.name]);
      if (sentinel) {
        const role = await opened.send(["ROLE"]);
        if (!Array.isArray(role) || role[0] !== "master") {
          throw new Error(`${formatHostPort(target)}, named by the Sentinels, is not a primary`);
        }
      }
      if (options.subscription) await subscribe(opened, options.subscription);
      return { session: opened, target };
    } catch (err) {
      opened.close();
      // A reply (WRONGPASS, NOPERM) and our own errors are reported as made; a failure
      // of the socket under the first commands (a TLS alert, a reset) as a connection error.
      throw openError(err, target);
    }
  };

  const run = async () => {
    for (let attempt = 0; !stop.signal.aborted;) {
      let opened: { session: Session; target: HostPort };
      try {
        opened = await open();
      } catch (err) {
        if (stop.signal.aborted) break;
        noteError(err);
        await sleep(reconnectDelay(attempt++, settings), stop.signal);
        continue;
      }
      if (stop.signal.aborted) {
        opened.session.close();
        break;
      }
      const since = performance.now();
      lastError = "";
      session = opened.session;
      connected = true;
      log.info("valkey connected", sentinel ? { primary: formatHostPort(opened.target) } : {});
      options.onStateChange?.(true);
      const why = await opened.session.ended;
      session = undefined;
      connected = false;
      if (stop.signal.aborted) {
        log.info("valkey connection closed");
        options.onStateChange?.(false);
        break;
      }
      log.warn(
        "valkey connection lost; reconnecting",
        why ? { error: describeValkeyError(why) } : {},
      );
      options.onStateChange?.(false);
      // A server that takes the connection and drops it at once is retried with
      // backoff, not ten times a second.
      attempt = performance.now() - since >= 1000 ? 0 : attempt + 1;
      await sleep(reconnectDelay(attempt, settings), stop.signal);
    }
  };
  run();

  return {
    get connected() {
      return connected;
    },
    call(command, ...args) {
      if (options.subscription) {
        return Promise.reject(new Error("a subscriber connection takes no commands"));
      }
      if (!session || !connected) return Promise.reject(new Error("Valkey is not connected"));
      return session.send([command, ...args]);
    },
    disconnect() {
      stop.abort();
      session?.close();
    },
  };
}
