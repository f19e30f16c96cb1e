/**
 * The client in a Valkey Cluster (VALKEY_CLUSTER_NODES). It learns which
 * primary serves which slot from CLUSTER SLOTS of the first node that answers
 * (the known primaries first, then the seeds given), sends each command to
 * the primary of its key's slot on a connection of that node's own, follows
 * MOVED (the slot moved: the map is updated and read again) and ASK (the slot
 * is moving: that one command goes to the other node after ASKING), retries
 * TRYAGAIN (a multi-key command during a migration) within VALKEY_TIMEOUT,
 * and reads the map again whenever a node's connection fails, so a replica
 * promoted in a failover is found. Commands fail at once while no node
 * answers, as with one server. A subscriber keeps one connection, to the
 * primary of its channel's slot (sharded PubSub must be there), and moves
 * with it.
 *
 * A MOVED or ASK is only sent for a command the node did not run, so
 * following one never runs a command twice.
 */

import { sleep, untilAborted } from "../lib/backoff.ts";
import type { Logger } from "../lib/log.ts";
import type { HostPort } from "../lib/setting_values.ts";
import type { ValkeyArg, ValkeyClient, ValkeyClientOptions } from "./valkey_commands.ts";
import {
  candidates,
  ClusterUnreachable,
  NodeMemory,
  readSlotMap,
  SlotMap,
} from "./valkey_cluster_map.ts";
import { createClusterSubscriber } from "./valkey_cluster_subscriber.ts";
import { describeConnectionError, describeValkeyError } from "./valkey_errors.ts";
import {
  describeValkeyTarget,
  formatHostPort,
  reconnectDelay,
  type ValkeySettings,
} from "./valkey_settings.ts";
import type { Session } from "./valkey_session.ts";
import { keySlot, parseRedirect, routingKey } from "./valkey_slots.ts";
import { openSession, type TlsOptions, tlsOptions } from "./valkey_socket.ts";

/** Most redirections one command follows (a slot moving twice while we send it). */
const MAX_REDIRECTS = 5;
/**
 * The slot map is read again at most this often, however many commands ask
 * for it; while reads find nothing new (a failover not done yet, a node
 * that stays unreachable) the gap doubles up to MAX_REFRESH_GAP_MS.
 */
const MIN_REFRESH_GAP_MS = 100;
const MAX_REFRESH_GAP_MS = 1000;

/** A cluster client: a command client, or a subscriber when the options carry a subscription. */
export function createClusterClient(
  settings: ValkeySettings,
  options: ValkeyClientOptions,
): ValkeyClient {
  return options.subscription
    ? createClusterSubscriber(settings, options)
    : new ClusterCommands(settings, options);
}

/** A connection to one node, opened on first use and dropped when it fails. */
interface Link {
  session?: Session;
  opening?: Promise<Session>;
}

/** The command client: a connection per primary, commands routed by slot; one method per step. */
class ClusterCommands implements ValkeyClient {
  readonly #settings: ValkeySettings;
  readonly #options: ValkeyClientOptions;
  readonly #tls: TlsOptions | undefined;
  readonly #log: Logger;
  readonly #stop = new AbortController();
  readonly #links = new Map<string, Link>();
  readonly #memory = new NodeMemory();
  /** Per node, the last reason it could not be reached, so each is logged once. */
  readonly #unreachable = new Map<string, string>();
  #map = new SlotMap();
  #connected = false;
  #lastError = "";
  #refreshWanted?: () => void;
  #lastRefresh = 0;
  #refreshGap = MIN_REFRESH_GAP_MS;
  /** The primary that last answered a keyed command: keyless ones (PING) go there too. */
  #lastUsed?: HostPort;

  constructor(settings: ValkeySettings, options: ValkeyClientOptions) {
    this.#settings = settings;
    this.#options = options;
    this.#tls = tlsOptions(settings);
    this.#log = options.logger.child({
      valkey: describeValkeyTarget(settings),
      connection: options.name,
    });
    this.#run();
  }

  get connected(): boolean {
    return this.#connected;
  }

  call(command: string, ...args: ValkeyArg[]): Promise<unknown> {
    const full: ValkeyArg[] = [command, ...args];
    return this.#route(routingKey(full), async (session, asking) => {
      if (!asking) return await session.send(full);
      const [, reply] = await Promise.all(session.sendAll([["ASKING"], full]));
      return reply;
    });
  }

  transaction(commands: ValkeyArg[][]): Promise<unknown[]> {
    const key = commands.map(routingKey).find((k) => k !== undefined);
    return this.#route(key, (session, asking) => session.transaction(commands, asking));
  }

  disconnect(): void {
    this.#stop.abort();
    for (const link of this.#links.values()) link.session?.close();
  }

  /** Asks the run loop to read the map again (at most every MIN_REFRESH_GAP_MS). */
  #wantRefresh(): void {
    this.#refreshWanted?.();
  }

  /**
   * The open connection to `address`, opened now if there is none. A failure
   * to open asks for the map again, unless reading the map is what opened it
   * (which would read it again and again while one node stays unreachable).
   */
  #sessionFor(address: HostPort, forMap = false): Promise<Session> {
    const key = formatHostPort(address);
    const known = this.#links.get(key);
    if (known?.session) return Promise.resolve(known.session);
    if (known?.opening) return known.opening;
    const link: Link = {};
    this.#links.set(key, link);
    const opening = openSession(address, {
      settings: this.#settings,
      tls: this.#tls,
      name: this.#options.name,
      stuck: this.#memory.stuck(address),
    });
    link.opening = opening.then((session) => {
      this.#memory.answered(address);
      this.#unreachable.delete(key);
      return this.#opened(key, link, session);
    }, (err) => {
      if (this.#links.get(key) === link) this.#links.delete(key);
      this.#memory.failed(address);
      this.#noteUnreachable(key, err);
      if (!forMap) this.#wantRefresh();
      throw err;
    });
    return link.opening;
  }

  /** Logs a node that cannot be reached, once per reason. */
  #noteUnreachable(key: string, err: unknown): void {
    const message = describeConnectionError(err, this.#tls !== undefined);
    if (this.#stop.signal.aborted || this.#unreachable.get(key) === message) return;
    this.#unreachable.set(key, message);
    this.#log.warn("valkey cluster node unreachable", { node: key, error: message });
  }

  /** Keeps a new connection; when it fails, drops it and reads the map again. */
  #opened(key: string, link: Link, session: Session): Session {
    link.session = session;
    link.opening = undefined;
    session.ended.then((why) => {
      if (this.#links.get(key) === link) this.#links.delete(key);
      if (!why || this.#stop.signal.aborted) return;
      this.#log.warn("valkey cluster node connection lost", {
        node: key,
        error: describeValkeyError(why),
      });
      this.#wantRefresh();
    });
    if (this.#stop.signal.aborted) session.close();
    return session;
  }

  /**
   * Reads the slot map. Idle connections to nodes that serve nothing now (a
   * demoted primary) are closed; one with commands in flight is left to
   * answer them (a MOVED, or their replies), since closing it would fail
   * commands that may have run.
   */
  async #refresh(): Promise<void> {
    this.#lastRefresh = performance.now();
    const seeds = this.#settings.valkeyClusterNodes ?? [];
    const before = this.#map.signature;
    this.#map = await readSlotMap(
      candidates(this.#map, seeds, this.#memory),
      (a) => this.#sessionFor(a, true),
    );
    this.#refreshGap = this.#map.signature === before
      ? Math.min(MAX_REFRESH_GAP_MS, this.#refreshGap * 2)
      : MIN_REFRESH_GAP_MS;
    const serving = new Set(this.#map.primaries().map(formatHostPort));
    for (const [key, link] of this.#links) {
      if (!serving.has(key) && link.session?.idle) {
        this.#links.delete(key);
        link.session.close();
      }
    }
  }

  /** Reads the map until disconnect(): at start, with backoff while it fails, and when asked. */
  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    const stopped = untilAborted(signal);
    for (let attempt = 0; !signal.aborted;) {
      const wanted = new Promise<void>((resolve) => this.#refreshWanted = resolve);
      try {
        await this.#refresh();
      } catch (err) {
        if (signal.aborted) break;
        this.#down(err);
        await sleep(reconnectDelay(attempt++, this.#settings), signal);
        continue;
      }
      attempt = 0;
      this.#up();
      await Promise.race([wanted, stopped]);
      const gap = this.#lastRefresh + this.#refreshGap - performance.now();
      if (gap > 0) await sleep(gap, signal);
    }
    for (const link of this.#links.values()) link.session?.close();
    this.#links.clear();
    if (this.#connected) {
      this.#connected = false;
      this.#log.info("valkey connection closed");
      this.#options.onStateChange?.(false);
    }
  }

  #up(): void {
    this.#lastError = "";
    if (this.#connected) return;
    this.#connected = true;
    const primaries = this.#map.primaries().map(formatHostPort).join(",");
    this.#log.info("valkey connected", { primaries });
    this.#options.onStateChange?.(true);
  }

  /** No node gave the map: commands fail at once until one does; each new cause logged once. */
  #down(err: unknown): void {
    if (this.#connected) {
      this.#connected = false;
      this.#log.warn("valkey connection lost; reconnecting", { error: describeValkeyError(err) });
      this.#options.onStateChange?.(false);
    }
    const cause = err instanceof ClusterUnreachable ? err.last : err;
    const message = describeConnectionError(cause, this.#tls !== undefined);
    if (message !== this.#lastError) this.#log.warn("valkey connection error", { error: message });
    this.#lastError = message;
  }

  /** Runs `send` at the primary of `key`'s slot, following redirections. */
  async #route<T>(
    key: string | undefined,
    send: (session: Session, asking: boolean) => Promise<T>,
  ): Promise<T> {
    if (!this.#connected) throw new Error("Valkey is not connected");
    const deadline = performance.now() + this.#settings.valkeyTimeout;
    let target = key === undefined
      ? this.#lastUsed ?? this.#map.primaries()[0]
      : this.#map.owner(keySlot(key));
    let asking = false;
    for (let hops = 0;;) {
      if (!target) {
        this.#wantRefresh();
        throw new Error(
          `no Valkey Cluster primary serves slot ${keySlot(key ?? "")} (cluster down?)`,
        );
      }
      try {
        const reply = await send(await this.#sessionFor(target), asking);
        if (key !== undefined) this.#lastUsed = target;
        return reply;
      } catch (err) {
        const next = await redirection(err, target, hops, deadline);
        if (!next) throw tooManyRedirects(err) ?? err;
        if (next.moved) {
          this.#map.assign(next.slot, next.to);
          this.#wantRefresh();
        }
        target = next.to;
        // After a TRYAGAIN (slot -1) the same node is asked the same way again.
        if (next.slot >= 0) {
          hops++;
          asking = !next.moved;
        }
      }
    }
  }
}

/**
 * Where to send a refused command next: the node a MOVED or ASK names, or
 * the same node again after a TRYAGAIN (slot -1), or undefined to give up.
 */
async function redirection(
  err: unknown,
  from: HostPort,
  hops: number,
  deadline: number,
): Promise<{ to: HostPort; slot: number; moved: boolean } | undefined> {
  if (hops >= MAX_REDIRECTS || performance.now() >= deadline) return undefined;
  const redirect = parseRedirect(err);
  if (redirect) {
    // An empty host is the node that answered.
    const to = redirect.to.host === "" ? { host: from.host, port: redirect.to.port } : redirect.to;
    return { to, slot: redirect.slot, moved: redirect.kind === "MOVED" };
  }
  if (err instanceof Error && err.name === "ReplyError" && err.message.startsWith("TRYAGAIN")) {
    await sleep(Math.min(100, Math.max(0, deadline - performance.now())));
    return { to: from, slot: -1, moved: false };
  }
  return undefined;
}

/** A redirection still given after MAX_REDIRECTS, as an error that says so; else undefined. */
function tooManyRedirects(err: unknown): Error | undefined {
  const redirect = parseRedirect(err);
  if (!redirect) return undefined;
  return new Error(
    `Valkey Cluster still redirected the command (${redirect.kind} to slot ${redirect.slot}) after ${MAX_REDIRECTS} tries: is the slot moving back and forth?`,
  );
}
