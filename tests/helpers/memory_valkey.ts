/**
 * An in-memory Valkey for unit tests of the modules that keep state in Valkey
 * (worker coordination, stores, cluster registration): the strings, hashes and sorted
 * sets they use, with expiry on an injected clock, behind the same
 * call/transaction interface as the real client. Lua scripts are not run:
 * a test registers what a script does, matched by a fragment of its text, and
 * the real scripts are proven against a real server under tests/integration/.
 * EVALSHA answers NOSCRIPT until the script was sent once with EVAL, as after
 * a server restart. `down` makes every command fail as the real client does
 * while disconnected.
 */

import { createHash } from "node:crypto";
import { ReplyError } from "../../lib/resp.ts";
import type { ValkeyArg, ValkeyCommands } from "../../shared/valkey_client.ts";

/** What a registered script does with its keys and arguments. */
export type ScriptBody = (valkey: MemoryValkey, keys: string[], args: string[]) => unknown;

interface Entry {
  value: string | Map<string, string> | Map<string, number>;
  kind: "string" | "hash" | "zset";
  expiresAt?: number;
}

/** The in-memory stand-in; see the module comment. */
export class MemoryValkey implements ValkeyCommands {
  readonly #data = new Map<string, Entry>();
  readonly #scripts: [string, ScriptBody][] = [];
  /** Scripts sent with EVAL, by SHA1, for EVALSHA. */
  readonly #loaded = new Map<string, string>();
  readonly #now: () => number;
  /** Every command received, in order (a transaction's commands each). */
  readonly calls: string[][] = [];
  /** Messages published, in order. */
  readonly published: { channel: string; message: string }[] = [];
  /** While true, every command rejects as on a lost connection. */
  down = false;

  constructor(options: { now?: () => number } = {}) {
    this.#now = options.now ?? Date.now;
  }

  /** Registers what the script containing `fragment` does. */
  script(fragment: string, body: ScriptBody): this {
    this.#scripts.push([fragment, body]);
    return this;
  }

  call(command: string, ...args: ValkeyArg[]): Promise<unknown> {
    if (this.down) return Promise.reject(new Error("Valkey is not connected"));
    try {
      return Promise.resolve(this.run([command, ...args].map(String)));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  transaction(commands: ValkeyArg[][]): Promise<unknown[]> {
    if (this.down) return Promise.reject(new Error("Valkey is not connected"));
    try {
      return Promise.resolve(commands.map((c) => this.run(c.map(String))));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** The string at `key`, or undefined. */
  get(key: string): string | undefined {
    const entry = this.#live(key);
    return entry?.kind === "string" ? entry.value as string : undefined;
  }

  /** Milliseconds until `key` expires, undefined without expiry or key. */
  ttl(key: string): number | undefined {
    const entry = this.#live(key);
    return entry?.expiresAt === undefined ? undefined : entry.expiresAt - this.#now();
  }

  /** The hash at `key` as an object (empty when there is none). */
  hash(key: string): Record<string, string> {
    const entry = this.#live(key);
    return entry?.kind === "hash" ? Object.fromEntries(entry.value as Map<string, string>) : {};
  }

  /** The sorted set at `key` as [member, score] pairs by score. */
  zset(key: string): [string, number][] {
    const entry = this.#live(key);
    if (entry?.kind !== "zset") return [];
    return [...(entry.value as Map<string, number>)].sort((a, b) => a[1] - b[1]);
  }

  /** Every live key. */
  keys(): string[] {
    return [...this.#data.keys()].filter((key) => this.#live(key));
  }

  #live(key: string): Entry | undefined {
    const entry = this.#data.get(key);
    if (entry?.expiresAt !== undefined && entry.expiresAt <= this.#now()) {
      this.#data.delete(key);
      return undefined;
    }
    return entry;
  }

  #typed<K extends Entry["kind"]>(key: string, kind: K, create: boolean): Entry | undefined {
    const entry = this.#live(key);
    if (entry && entry.kind !== kind) {
      throw new ReplyError("WRONGTYPE Operation against a key holding the wrong kind of value");
    }
    if (entry || !create) return entry;
    const made: Entry = { kind, value: new Map() };
    this.#data.set(key, made);
    return made;
  }

  /** Runs one command synchronously (so a transaction is atomic). */
  run(args: string[]): unknown {
    this.calls.push(args);
    const [name, ...rest] = args;
    const handler = this.#commands[name.toUpperCase()];
    if (!handler) throw new ReplyError(`ERR unknown command '${name}'`);
    return handler(rest);
  }

  readonly #commands: Record<string, (args: string[]) => unknown> = {
    PING: () => "PONG",
    GET: ([key]) => this.get(key) ?? null,
    SET: ([key, value, ...options]) => {
      const upper = options.map((o) => o.toUpperCase());
      if (upper.includes("NX") && this.#live(key)) return null;
      if (upper.includes("XX") && !this.#live(key)) return null;
      const px = upper.indexOf("PX");
      const ex = upper.indexOf("EX");
      const ms = px >= 0 ? Number(options[px + 1]) : ex >= 0 ? Number(options[ex + 1]) * 1000 : 0;
      if ((px >= 0 || ex >= 0) && !(ms > 0 && Number.isInteger(ms))) {
        throw new ReplyError("ERR invalid expire time in 'set' command");
      }
      this.#data.set(key, { kind: "string", value, expiresAt: ms ? this.#now() + ms : undefined });
      return "OK";
    },
    DEL: (keys) => keys.filter((key) => this.#live(key) && this.#data.delete(key)).length,
    PEXPIRE: ([key, ms]) => {
      const entry = this.#live(key);
      if (!entry) return 0;
      entry.expiresAt = this.#now() + Number(ms);
      return 1;
    },
    HSET: ([key, ...pairs]) => {
      const map = this.#typed(key, "hash", true)!.value as Map<string, string>;
      let added = 0;
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        if (!map.has(pairs[i])) added++;
        map.set(pairs[i], pairs[i + 1]);
      }
      return added;
    },
    HEXISTS: ([key, field]) =>
      (this.#typed(key, "hash", false)?.value as Map<string, string> | undefined)?.has(field)
        ? 1
        : 0,
    HGETALL: ([key]) => Object.entries(this.hash(key)).flat(),
    ZADD: ([key, ...pairs]) => {
      const map = this.#typed(key, "zset", true)!.value as Map<string, number>;
      let added = 0;
      for (let i = 0; i + 1 < pairs.length; i += 2) {
        if (!map.has(pairs[i + 1])) added++;
        map.set(pairs[i + 1], Number(pairs[i]));
      }
      return added;
    },
    ZREM: ([key, ...members]) => {
      const map = this.#typed(key, "zset", false)?.value as Map<string, number> | undefined;
      return members.filter((m) => map?.delete(m)).length;
    },
    ZRANGEBYSCORE: ([key, min, max, ...options]) => {
      const inRange = this.zset(key).filter(([, s]) => s >= bound(min) && s <= bound(max));
      const limit = options.map((o) => o.toUpperCase()).indexOf("LIMIT");
      const from = limit >= 0 ? Number(options[limit + 1]) : 0;
      const count = limit >= 0 ? Number(options[limit + 2]) : Infinity;
      return inRange.slice(from, from + count).map(([member]) => member);
    },
    ZREMRANGEBYSCORE: ([key, min, max]) => {
      const map = this.#typed(key, "zset", false)?.value as Map<string, number> | undefined;
      let removed = 0;
      for (const [member, score] of map ?? []) {
        if (score >= bound(min) && score <= bound(max) && map!.delete(member)) removed++;
      }
      return removed;
    },
    PUBLISH: ([channel, message]) => {
      this.published.push({ channel, message });
      return 0;
    },
    EVAL: ([text, count, ...rest]) => {
      const found = this.#scripts.find(([fragment]) => text.includes(fragment));
      if (!found) throw new ReplyError("ERR this test registered no such script");
      this.#loaded.set(createHash("sha1").update(text).digest("hex"), text);
      const n = Number(count);
      return found[1](this, rest.slice(0, n), rest.slice(n));
    },
    EVALSHA: ([sha, ...rest]) => {
      const text = this.#loaded.get(sha.toLowerCase());
      if (text === undefined) throw new ReplyError("NOSCRIPT No matching script. Please use EVAL.");
      return this.#commands.EVAL([text, ...rest]);
    },
  };
}

/** A score bound of ZRANGEBYSCORE: a number, -inf or +inf. */
function bound(text: string): number {
  if (text === "-inf") return -Infinity;
  if (text === "+inf") return Infinity;
  return Number(text);
}
