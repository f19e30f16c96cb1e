/**
 * One open Valkey connection: commands written in order (those of one event
 * loop turn in one write), replies matched to them in order, each command
 * bounded by VALKEY_TIMEOUT, and on a subscriber connection the pushes
 * (messages, subscribe confirmations) handed to onPush. It never reconnects:
 * the clients (shared/valkey_client.ts, shared/valkey_cluster_client.ts) open
 * a new one.
 */

import { setImmediate } from "node:timers";
import { commandText, ProtocolError, ReplyError, type RespValue } from "../lib/resp.ts";
import { RespReader } from "../lib/resp.ts";

// What a subscriber connection is sent without asking: messages of classic and
// sharded PubSub, the server's word that a subscription began or ended (a
// sharded one ends when its slot moves to another node), and the answer to a
// PING sent while subscribed.
const PUSH_KINDS = new Set([
  "message",
  "smessage",
  "subscribe",
  "ssubscribe",
  "unsubscribe",
  "sunsubscribe",
  "pong",
]);

/** A socket-level error with a Node-style code, so one table (shared/valkey_errors.ts) describes it. */
export class ConnectError extends Error {
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

/** A command that got no reply within VALKEY_TIMEOUT. */
export class TimeoutError extends Error {
  override name = "TimeoutError";
}

const encoder = new TextEncoder();

/** Most commands one connection holds unanswered; more fail at once (web answers 503). */
export const MAX_PENDING = 4096;

interface Pending {
  resolve(value: RespValue): void;
  reject(err: Error): void;
  command: string;
  /** performance.now() after which it is answered with a TimeoutError. */
  deadline: number;
}

/** One open connection: writes batched in order, replies matched to commands in order. */
export class Session {
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
    const refused = this.#refusal(1);
    return refused ? Promise.reject(refused) : this.#enqueue(args);
  }

  /** True when no command waits for its reply. */
  get idle(): boolean {
    return this.#queue.length === this.#queueHead;
  }

  /**
   * Sends commands that must go out together (ASKING and its command, a
   * transaction): all of them, or none when the connection cannot take all.
   * A batch cut short would leave the server inside MULTI, queueing the next
   * caller's commands instead of running them.
   */
  sendAll(commands: readonly (readonly (string | number)[])[]): Promise<RespValue>[] {
    const refused = this.#refusal(commands.length);
    return commands.map((args) => refused ? Promise.reject(refused) : this.#enqueue(args));
  }

  /** Why `count` more commands cannot be sent now, or undefined. */
  #refusal(count: number): Error | undefined {
    if (this.#closed) return new Error("Valkey connection is closed");
    if (this.#queue.length - this.#queueHead + count > MAX_PENDING) {
      return new Error(`${MAX_PENDING} commands are already waiting for Valkey`);
    }
    return undefined;
  }

  #enqueue(args: readonly (string | number)[]): Promise<RespValue> {
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

  /** Ends the session for a reason of ours, which `ended` then resolves with. */
  end(reason: Error): void {
    this.#abortReason ??= reason;
    this.close();
  }

  /**
   * MULTI, the commands and EXEC, written together on this connection, so
   * they run all or none (ASKING first when a cluster node sent us here with
   * ASK: it holds for the whole transaction). Resolves with the commands'
   * replies; rejects with the first refusal, at queueing (a MOVED) or at
   * running.
   */
  async transaction(
    commands: readonly (readonly (string | number)[])[],
    asking = false,
  ): Promise<RespValue[]> {
    const sent = this.sendAll([
      ...(asking ? [["ASKING"]] : []),
      ["MULTI"],
      ...commands,
      ["EXEC"],
    ]);
    const settled = await Promise.allSettled(sent);
    const exec = settled[settled.length - 1];
    if (exec.status === "fulfilled" && Array.isArray(exec.value)) {
      const refused = exec.value.find((reply) => reply instanceof ReplyError);
      if (refused) throw refused;
      return exec.value;
    }
    // EXECABORT: a command was refused while queueing; that refusal says why.
    const queued = settled.slice(asking ? 2 : 1, -1).find((s) => s.status === "rejected");
    if (queued?.status === "rejected") throw queued.reason;
    if (exec.status === "rejected") throw exec.reason;
    throw new ProtocolError("EXEC answered neither replies nor an error");
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
    if (this.onPush && Array.isArray(value) && PUSH_KINDS.has(value[0] as string)) {
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
