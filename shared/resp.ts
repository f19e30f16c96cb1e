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
  // One string, encoded once: a command is built for every event, and an encode
  // per argument cost more than the bytes themselves.
  let text = `*${args.length}\r\n`;
  for (const arg of args) {
    const value = typeof arg === "string" ? arg : String(arg);
    text += `$${utf8Length(value)}\r\n${value}\r\n`;
  }
  return encoder.encode(text);
}

/** How many bytes TextEncoder makes of `text` (a lone surrogate becomes U+FFFD, 3 bytes). */
export function utf8Length(text: string): number {
  let bytes = text.length;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) {
      bytes += 1;
    } else if (
      c >= 0xd800 && c <= 0xdbff && i + 1 < text.length &&
      (text.charCodeAt(i + 1) & 0xfc00) === 0xdc00
    ) {
      bytes += 2; // two code units, four bytes
      i++;
    } else {
      bytes += 2;
    }
  }
  return bytes;
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

  /** Index of the CR ending the line at #pos; throws INCOMPLETE when it has not arrived. */
  #lineEnd(): number {
    const buf = this.#buf;
    for (let i = this.#pos; i + 1 < buf.length; i++) {
      if (buf[i] === CR && buf[i + 1] === LF) return i;
    }
    if (buf.length - this.#pos > 64 * 1024) throw new ProtocolError("reply line too long");
    throw INCOMPLETE;
  }

  #line(): string {
    const end = this.#lineEnd();
    const line = decoder.decode(this.#buf.subarray(this.#pos, end));
    this.#pos = end + 2;
    return line;
  }

  /** The line as a decimal integer, read from the bytes: lengths and integers need no string. */
  #integer(maxDigits: number): number {
    const end = this.#lineEnd();
    const buf = this.#buf;
    let i = this.#pos;
    const negative = buf[i] === 0x2d;
    if (negative) i++;
    if (i === end || end - i > maxDigits) throw new ProtocolError("bad number in reply");
    let n = 0;
    for (; i < end; i++) {
      const d = buf[i] - 0x30;
      if (d < 0 || d > 9) throw new ProtocolError("bad number in reply");
      n = n * 10 + d;
    }
    this.#pos = end + 2;
    return negative ? -n : n;
  }

  #length(): number {
    const n = this.#integer(10);
    if (n > MAX_LENGTH) throw new ProtocolError("reply too large");
    return n;
  }

  #read(): RespValue {
    if (this.#pos >= this.#buf.length) throw INCOMPLETE;
    const type = this.#buf[this.#pos++];
    switch (type) {
      case 0x2b: // +
        return this.#line();
      case 0x2d: // -
        return new ReplyError(this.#line());
      case 0x3a: // :
        return this.#integer(19);
      case 0x24: { // $
        const n = this.#length();
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
        const n = this.#length();
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
