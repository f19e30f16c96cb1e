/**
 * What a Valkey Cluster client must know of slots: the slot of a key (CRC16
 * of the key, or of its {hash tag}, modulo 16384), which argument of a command
 * is the key it is routed by, the slot map a node answers to CLUSTER SLOTS,
 * and the MOVED and ASK redirections. Pure: no I/O.
 */

import type { HostPort } from "../lib/setting_values.ts";

/** Slots in a Valkey Cluster. */
export const SLOTS = 16384;

// CRC16-CCITT (XMODEM), the checksum Valkey Cluster hashes keys with.
const CRC16_TABLE = (() => {
  const table = new Uint16Array(256);
  for (let byte = 0; byte < 256; byte++) {
    let crc = byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
    table[byte] = crc & 0xffff;
  }
  return table;
})();

const encoder = new TextEncoder();

function crc16(bytes: Uint8Array): number {
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16_TABLE[((crc >> 8) ^ byte) & 0xff];
  return crc;
}

/**
 * The slot of a key: only the part between the first `{` and the next `}` is
 * hashed when that part is not empty, so keys sharing a tag share a slot.
 */
export function keySlot(key: string): number {
  const bytes = encoder.encode(key);
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) % SLOTS;
  }
  return crc16(bytes) % SLOTS;
}

// Commands that name no key: any node answers them (a classic PUBLISH is
// carried to every node by the cluster bus).
const KEYLESS = new Set([
  "PING",
  "ECHO",
  "PUBLISH",
  "INFO",
  "ROLE",
  "TIME",
  "CLUSTER",
  "CLIENT",
  "SCRIPT",
  "CONFIG",
  "DBSIZE",
  "ASKING",
  "MULTI",
  "EXEC",
]);

/**
 * The key a command is routed by, or undefined for a command any node
 * answers. Scripts name their keys after the key count; every other command
 * takes its key first. A command guessed wrong is answered MOVED, which the
 * client follows.
 */
export function routingKey(args: readonly (string | number)[]): string | undefined {
  const name = String(args[0]).toUpperCase();
  if (name === "EVAL" || name === "EVALSHA" || name === "FCALL") {
    return Number(args[2]) > 0 ? String(args[3]) : undefined;
  }
  if (KEYLESS.has(name) || args.length < 2) return undefined;
  return String(args[1]);
}

/** A run of slots and the primary that serves it. */
export interface SlotRange {
  first: number;
  last: number;
  primary: HostPort;
}

/**
 * The slot ranges of a CLUSTER SLOTS reply. A node that does not know its own
 * address announces an empty host: it is the one asked. Malformed entries are
 * refused whole, so a half-read map never routes a command.
 */
export function parseClusterSlots(reply: unknown, asked: HostPort): SlotRange[] {
  if (!Array.isArray(reply)) throw new Error("CLUSTER SLOTS answered something other than a list");
  const ranges = reply.map((entry) => {
    const [first, last, primary] = Array.isArray(entry) ? entry : [];
    const [host, port] = Array.isArray(primary) ? primary : [];
    if (
      !Number.isInteger(first) || !Number.isInteger(last) || first < 0 || last >= SLOTS ||
      first > last || typeof host !== "string" || !Number.isInteger(port) || port < 1 ||
      port > 65535
    ) {
      throw new Error("CLUSTER SLOTS answered a malformed slot range");
    }
    return { first, last, primary: { host: host === "" ? asked.host : host, port } };
  });
  // Ranges that overlap could make the client assign a slot billions of times.
  const assigned = ranges.reduce((sum, r) => sum + r.last - r.first + 1, 0);
  if (assigned > SLOTS) throw new Error("CLUSTER SLOTS answered a malformed slot range");
  return ranges;
}

/** Where a MOVED or ASK reply sends a command. */
export interface Redirect {
  kind: "MOVED" | "ASK";
  slot: number;
  to: HostPort;
}

/** The redirection an error reply carries ("MOVED 3999 127.0.0.1:6381"), or undefined. */
export function parseRedirect(err: unknown): Redirect | undefined {
  if (!(err instanceof Error) || err.name !== "ReplyError") return undefined;
  const match = /^(MOVED|ASK) (\d+) (\S*):(\d+)$/.exec(err.message);
  if (!match) return undefined;
  const slot = Number(match[2]);
  const port = Number(match[4]);
  if (slot >= SLOTS || port < 1 || port > 65535) return undefined;
  // An IPv6 address comes without brackets; an empty host means "the node you asked".
  return { kind: match[1] as "MOVED" | "ASK", slot, to: { host: match[3], port } };
}
