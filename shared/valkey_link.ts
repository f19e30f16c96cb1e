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
import type { ValkeyClient, ValkeyClientOptions, ValkeySubscription } from "./valkey_client.ts";
import { describeConnectionError, describeValkeyError } from "./valkey_errors.ts";
import { reconnectDelay, type ValkeySettings } from "./valkey_settings.ts";
import { type Session, TimeoutError } from "./valkey_session.ts";
import { type Stuck, type TlsOptions, tlsOptions } from "./valkey_socket.ts";

/** What opening a connection may use. */
export interface OpenContext {
  tls: TlsOptions | undefined;
  stuck: Stuck;
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
  const context: OpenContext = {
    tls: tlsOptions(settings),
    stuck: {},
    signal: new AbortController().signal,
  };
  const stop = new AbortController();
  context.signal = stop.signal;
  const log = options.logger.child({ valkey: target, connection: options.name });
  let session: Session | undefined;
  let lastError = "";

  const noteError = (err: unknown) => {
    const message = describeConnectionError(err, context.tls !== undefined);
    if (message !== lastError) log.warn("valkey connection error", { error: message });
    lastError = message;
  };

  const openOnce = async (): Promise<Opened> => {
    const opened = await open(context);
    if (!options.subscription) return opened;
    try {
      await subscribe(opened.session, options.subscription);
      return opened;
    } catch (err) {
      opened.session.close();
      throw err;
    }
  };

  const run = async () => {
    for (let attempt = 0; !stop.signal.aborted;) {
      let opened: Opened;
      try {
        opened = await openOnce();
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
      log.info("valkey connected", opened.fields);
      options.onStateChange?.(true);
      const why = await opened.session.ended;
      session = undefined;
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

  // Not async: web sends a command per event, and a wrapping promise per command shows in its CPU.
  const unusable = (): Error | undefined => {
    if (options.subscription) return new Error("a subscriber connection takes no commands");
    if (!session) return new Error("Valkey is not connected");
    return undefined;
  };
  return {
    get connected() {
      return session !== undefined;
    },
    call(command, ...args) {
      const refused = unusable();
      return refused ? Promise.reject(refused) : session!.send([command, ...args]);
    },
    transaction(commands) {
      const refused = unusable();
      return refused ? Promise.reject(refused) : session!.transaction(commands);
    },
    disconnect() {
      stop.abort();
      session?.close();
    },
  };
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
    session.onPush = (value) => {
      if (value instanceof ReplyError) {
        clearTimeout(timer);
        reject(value);
      } else if (Array.isArray(value) && value[0] === kind.message) {
        subscription.onMessage(String(value[1]), String(value[2]));
      } else if (Array.isArray(value) && value[0] === kind.confirmed) {
        if (++confirmed === subscription.channels.length) {
          clearTimeout(timer);
          resolve();
        }
      } else if (Array.isArray(value) && value[0] === kind.ended) {
        session.end(new Error("Valkey ended the subscription: its slot moved to another node"));
      }
    };
    session.sendUnanswered([kind.subscribe, ...subscription.channels]);
  });
}
