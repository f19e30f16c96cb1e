/**
 * RESP2, the protocol Valkey speaks (https://valkey.io/topics/protocol/):
 * commands out as arrays of bulk strings, replies in as they come off the
 * socket, however the bytes are split. Lengths are in bytes, so parsing works
 * on bytes and decodes each bulk string as UTF-8 only once it is whole.
 */

/** A reply: simple and bulk strings, integers, nil, arrays of them; an error reply is a ReplyError. */
export type RespValue = string | number | null | ReplyError | RespValue[];

/** An error reply from the server. Named as the other client's, so describeValkeyError knows it. */
export class ReplyError extends Error {
  override name = "ReplyError";
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const CR = 13;
const LF = 10;

/** One command as RESP: `*N` then each argument as a bulk string. */
export function encodeCommand(args: readonly (string | number)[]): Uint8Array {
  const parts = args.map((arg) => encoder.encode(String(arg)));
  const heads = parts.map((part) => `$${part.length}\r\n`);
  const head = `*${parts.length}\r\n`;
  let size = head.length;
  for (let i = 0; i < parts.length; i++) size += heads[i].length + parts[i].length + 2;
  const out = new Uint8Array(size);
  let at = encoder.encodeInto(head, out).written;
  for (let i = 0; i < parts.length; i++) {
    at += encoder.encodeInto(heads[i], out.subarray(at)).written;
    out.set(parts[i], at);
    at += parts[i].length;
    out[at++] = CR;
    out[at++] = LF;
  }
  return out;
}

/** Thrown by the parser at the end of the bytes it has: wait for more. */
const INCOMPLETE = Symbol("incomplete");

/** The server sent bytes that are not RESP2: the connection cannot be trusted to stay in step. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
}

/** Largest bulk string or array taken: far above anything web or a worker exchanges. */
const MAX_LENGTH = 64 * 1024 * 1024;

/**
 * Collects bytes and hands out whole replies in order. `push` the bytes read,
 * then call `next` until it returns undefined.
 */
export class RespReader {
  #buf: Uint8Array = new Uint8Array(0);
  #pos = 0;

  /** Adds bytes read from the socket. */
  push(bytes: Uint8Array): void {
    if (this.#pos >= this.#buf.length) {
      this.#buf = bytes;
    } else {
      const rest = this.#buf.subarray(this.#pos);
      const joined = new Uint8Array(rest.length + bytes.length);
      joined.set(rest);
      joined.set(bytes, rest.length);
      this.#buf = joined;
    }
    this.#pos = 0;
  }

  /** The next whole reply, or undefined when its bytes have not all arrived. */
  next(): { value: RespValue } | undefined {
    if (this.#pos >= this.#buf.length) return undefined;
    const start = this.#pos;
    try {
      return { value: this.#read() };
    } catch (err) {
      if (err !== INCOMPLETE) throw err;
      this.#pos = start;
      return undefined;
    }
  }

  #line(): string {
    const buf = this.#buf;
    for (let i = this.#pos; i + 1 < buf.length; i++) {
      if (buf[i] === CR && buf[i + 1] === LF) {
        const line = decoder.decode(buf.subarray(this.#pos, i));
        this.#pos = i + 2;
        return line;
      }
    }
    if (buf.length - this.#pos > 64 * 1024) throw new ProtocolError("reply line too long");
    throw INCOMPLETE;
  }

  #length(text: string): number {
    if (!/^-?\d{1,10}$/.test(text)) throw new ProtocolError("bad length in reply");
    const n = Number(text);
    if (n > MAX_LENGTH) throw new ProtocolError("reply too large");
    return n;
  }

  #read(): RespValue {
    const type = this.#buf[this.#pos++];
    const line = this.#line();
    switch (type) {
      case 0x2b: // +
        return line;
      case 0x2d: // -
        return new ReplyError(line);
      case 0x3a: { // :
        if (!/^-?\d{1,20}$/.test(line)) throw new ProtocolError("bad integer in reply");
        return Number(line);
      }
      case 0x24: { // $
        const n = this.#length(line);
        if (n < 0) return null;
        if (this.#buf.length < this.#pos + n + 2) throw INCOMPLETE;
        if (this.#buf[this.#pos + n] !== CR || this.#buf[this.#pos + n + 1] !== LF) {
          throw new ProtocolError("bulk string not followed by CRLF");
        }
        const text = decoder.decode(this.#buf.subarray(this.#pos, this.#pos + n));
        this.#pos += n + 2;
        return text;
      }
      case 0x2a: { // *
        const n = this.#length(line);
        if (n < 0) return null;
        const items: RespValue[] = [];
        for (let i = 0; i < n; i++) items.push(this.#read());
        return items;
      }
      default:
        throw new ProtocolError("unknown reply type");
    }
  }
}
