/**
 * One Valkey connection kept open: opened in the background, reopened with
 * capped backoff until disconnect(), every change logged once ("valkey
 * connected"; one "valkey connection error" per distinct cause; "lost;
 * reconnecting" (warn) when it drops; "closed" (info) when we close it).
 * Commands fail at once while it is down, so web can answer 503 instead of
 * queueing an event nobody may see. A subscriber connection subscribes on
 * every open and counts as connected only once the server confirmed it.
 */

import { sleep } from "../lib/backoff.ts";
import { ReplyError } from "../lib/resp.ts";
import type { Logger } from "../lib/log.ts";
import type {
  ValkeyArg,
  ValkeyClient,
  ValkeyClientOptions,
  ValkeySubscription,
} from "./valkey_commands.ts";
import { describeConnectionError, describeValkeyError } from "./valkey_errors.ts";
import { formatHostPort, reconnectDelay, type ValkeySettings } from "./valkey_settings.ts";
import type { HostPort } from "../lib/setting_values.ts";
import { type Session, TimeoutError } from "./valkey_session.ts";
import { type Stuck, type TlsOptions, tlsOptions } from "./valkey_socket.ts";

/** What opening a connection may use. */
export interface OpenContext {
  tls: TlsOptions | undefined;
  /** The stuck attempt of one address: a hung server does not hold up the others. */
  stuckFor(address: HostPort): Stuck;
  signal: AbortSignal;
}

/** An open connection and what "valkey connected" says of it. */
export interface Opened {
  session: Session;
  fields: Record<string, string>;
}

/** Keeps one connection open with `open` until disconnect(); `target` names it in the logs. */
export function keepConnected(
  settings: ValkeySettings,
  options: ValkeyClientOptions,
  target: string,
  open: (context: OpenContext) => Promise<Opened>,
): ValkeyClient {
  return new KeptConnection(settings, options, target, open);
}

/** See keepConnected; its steps are the methods below. */
class KeptConnection implements ValkeyClient {
  readonly #settings: ValkeySettings;
  readonly #options: ValkeyClientOptions;
  readonly #open: (context: OpenContext) => Promise<Opened>;
  readonly #stop = new AbortController();
  readonly #context: OpenContext;
  readonly #log: Logger;
  #session?: Session;
  #lastError = "";

  constructor(
    settings: ValkeySettings,
    options: ValkeyClientOptions,
    target: string,
    open: (context: OpenContext) => Promise<Opened>,
  ) {
    this.#settings = settings;
    this.#options = options;
    this.#open = open;
    const stuck = new Map<string, Stuck>();
    this.#context = {
      tls: tlsOptions(settings),
      stuckFor: (address) => {
        const key = formatHostPort(address);
        if (!stuck.has(key)) stuck.set(key, {});
        return stuck.get(key)!;
      },
      signal: this.#stop.signal,
    };
    this.#log = options.logger.child({ valkey: target, connection: options.name });
    this.#run();
  }

  get connected(): boolean {
    return this.#session !== undefined;
  }

  // Not async: web sends a command per event, and a wrapping promise per command shows in its CPU.
  call(command: string, ...args: ValkeyArg[]): Promise<unknown> {
    const refused = this.#unusable();
    return refused ? Promise.reject(refused) : this.#session!.send([command, ...args]);
  }

  transaction(commands: ValkeyArg[][]): Promise<unknown[]> {
    const refused = this.#unusable();
    return refused ? Promise.reject(refused) : this.#session!.transaction(commands);
  }

  disconnect(): void {
    this.#stop.abort();
    this.#session?.close();
  }

  #unusable(): Error | undefined {
    if (this.#options.subscription) return new Error("a subscriber connection takes no commands");
    if (!this.#session) return new Error("Valkey is not connected");
    return undefined;
  }

  /** Opens, then subscribes on a subscriber connection. */
  async #openOnce(): Promise<Opened> {
    const opened = await this.#open(this.#context);
    if (!this.#options.subscription) return opened;
    try {
      await subscribe(opened.session, this.#options.subscription);
      return opened;
    } catch (err) {
      opened.session.close();
      throw err;
    }
  }

  /** Each new cause is logged once, not on every retry. */
  #noteError(err: unknown): void {
    const message = describeConnectionError(err, this.#context.tls !== undefined);
    if (message !== this.#lastError) this.#log.warn("valkey connection error", { error: message });
    this.#lastError = message;
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    for (let attempt = 0; !signal.aborted;) {
      let opened: Opened;
      try {
        opened = await this.#openOnce();
      } catch (err) {
        if (signal.aborted) break;
        this.#noteError(err);
        await sleep(reconnectDelay(attempt++, this.#settings), signal);
        continue;
      }
      const lasted = await this.#hold(opened);
      if (signal.aborted) break;
      // A server that takes the connection and drops it at once is retried with
      // backoff, not ten times a second.
      attempt = lasted >= 1000 ? 0 : attempt + 1;
      await sleep(reconnectDelay(attempt, this.#settings), signal);
    }
  }

  /** Uses the connection until it ends; logs both changes; resolves with how long it lasted. */
  async #hold(opened: Opened): Promise<number> {
    if (this.#stop.signal.aborted) {
      opened.session.close();
      return 0;
    }
    const since = performance.now();
    this.#lastError = "";
    this.#session = opened.session;
    this.#log.info("valkey connected", opened.fields);
    this.#options.onStateChange?.(true);
    const why = await opened.session.ended;
    this.#session = undefined;
    if (this.#stop.signal.aborted) this.#log.info("valkey connection closed");
    else {
      this.#log.warn(
        "valkey connection lost; reconnecting",
        why ? { error: describeValkeyError(why) } : {},
      );
    }
    this.#options.onStateChange?.(false);
    return performance.now() - since;
  }
}

// What each kind of subscription sends and hears back.
const KINDS = {
  classic: { subscribe: "SUBSCRIBE", confirmed: "subscribe", message: "message", ended: "" },
  sharded: {
    subscribe: "SSUBSCRIBE",
    confirmed: "ssubscribe",
    message: "smessage",
    ended: "sunsubscribe",
  },
};

/**
 * Subscribes on a fresh connection and routes its messages; resolves once the
 * server confirmed every channel, rejects when it refuses one (an ACL without
 * the channel) or does not answer within the timeout. A sharded subscription
 * the server ends (its slot moved to another node) ends the connection, so
 * the client subscribes again where the slot is now.
 */
export function subscribe(session: Session, subscription: ValkeySubscription): Promise<void> {
  const kind = subscription.sharded ? KINDS.sharded : KINDS.classic;
  return new Promise<void>((resolve, reject) => {
    let confirmed = 0;
    const timer = setTimeout(
      () =>
        reject(new TimeoutError(`Valkey did not confirm ${kind.subscribe} within VALKEY_TIMEOUT`)),
      session.timeoutMs,
    );
    // A connection that ends before the confirmation says why at once.
    session.ended.then((why) => {
      clearTimeout(timer);
      reject(why ?? new Error("Valkey connection is closed"));
    });
    const alive = keepAlive(session);
    session.onPush = (value) => {
      alive.heard();
      if (value instanceof ReplyError) {
        clearTimeout(timer);
        reject(value);
      } else if (Array.isArray(value) && value[0] === kind.message) {
        subscription.onMessage(String(value[1]), String(value[2]));
      } else if (Array.isArray(value) && value[0] === kind.confirmed) {
        if (++confirmed === subscription.channels.length) {
          clearTimeout(timer);
          alive.start();
          resolve();
        }
      } else if (Array.isArray(value) && value[0] === kind.ended) {
        session.end(new Error("Valkey ended the subscription: its slot moved to another node"));
      }
    };
    session.sendUnanswered([kind.subscribe, ...subscription.channels]);
  });
}

/** How often a quiet subscriber connection asks the server whether it is still there. */
export const SUBSCRIBER_PING_MS = 5000;

/**
 * A subscriber sends nothing, so a server that vanished without closing the
 * connection (a node gone in a failover, a partition) would leave it waiting
 * forever. After a quiet SUBSCRIBER_PING_MS it sends PING (allowed while
 * subscribed); when nothing at all comes back within VALKEY_TIMEOUT it ends
 * the connection, and the client reconnects where the channel is now.
 */
function keepAlive(session: Session): { start(): void; heard(): void } {
  let lastHeard = performance.now();
  let pingedAt: number | undefined;
  let ticker: ReturnType<typeof setInterval> | undefined;
  const tick = () => {
    const now = performance.now();
    if (pingedAt !== undefined && now - pingedAt >= session.timeoutMs) {
      session.end(
        new TimeoutError("Valkey did not answer the subscriber's PING within VALKEY_TIMEOUT"),
      );
    } else if (pingedAt === undefined && now - lastHeard >= SUBSCRIBER_PING_MS) {
      pingedAt = now;
      session.sendUnanswered(["PING"]);
    }
  };
  session.ended.then(() => clearInterval(ticker));
  return {
    start() {
      ticker ??= setInterval(tick, Math.max(50, Math.min(1000, session.timeoutMs / 2)));
    },
    heard() {
      lastHeard = performance.now();
      pingedAt = undefined;
    },
  };
}
