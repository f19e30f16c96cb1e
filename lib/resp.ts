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

const decoder = new TextDecoder();
const CR = 13;
const LF = 10;

/** One command as RESP text: `*N` then each argument as a bulk string (encoded as UTF-8 by the caller, often with others). */
export function commandText(args: readonly (string | number)[]): string {
  // One string, encoded once: a command is built for every event, and an encode
  // per argument cost more than the bytes themselves.
  let text = `*${args.length}\r\n`;
  for (const arg of args) {
    const value = typeof arg === "string" ? arg : String(arg);
    text += `$${utf8Length(value)}\r\n${value}\r\n`;
  }
  return text;
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

/**
 * Largest reply taken, in bytes: far above anything web exchanges (a status
 * record of many clusters), and low enough that a hostile or broken server
 * cannot make web hold gigabytes. Beyond it the connection is given up.
 */
export const MAX_REPLY_BYTES = 16 * 1024 * 1024;
/** Deepest nesting of arrays taken: web's replies nest two levels at most. */
export const MAX_REPLY_DEPTH = 8;
// Longest line before a CRLF (a type byte and a number, or a short status text).
const MAX_LINE = 64 * 1024;

/** An array being read: its items so far and how many are still to come. */
interface Frame {
  items: RespValue[];
  left: number;
}

/**
 * Collects bytes and hands out whole replies in order. `push` the bytes read,
 * then call `next` until it returns undefined. Reading resumes where it
 * stopped: a reply that arrives in many pieces is parsed once, not again from
 * its start for every piece.
 */
export class RespReader {
  // Bytes [#pos, #end) of #buf are unread; #buf grows by doubling.
  #buf: Uint8Array = new Uint8Array(64 * 1024);
  #pos = 0;
  #end = 0;
  #stack: Frame[] = [];
  // Bytes of the reply being read that were consumed into #stack already.
  #replyBytes = 0;

  /** Adds bytes read from the socket. */
  push(bytes: Uint8Array): void {
    const unread = this.#end - this.#pos;
    if (this.#replyBytes + unread + bytes.length > MAX_REPLY_BYTES) {
      throw new ProtocolError(`a reply over ${MAX_REPLY_BYTES} bytes`);
    }
    if (this.#end + bytes.length > this.#buf.length) {
      if (unread + bytes.length <= this.#buf.length) {
        this.#buf.copyWithin(0, this.#pos, this.#end);
      } else {
        let size = this.#buf.length;
        while (size < unread + bytes.length) size *= 2;
        const grown = new Uint8Array(size);
        grown.set(this.#buf.subarray(this.#pos, this.#end));
        this.#buf = grown;
      }
      this.#end = unread;
      this.#pos = 0;
    }
    this.#buf.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** The next whole reply, or undefined when its bytes have not all arrived. */
  next(): { value: RespValue } | undefined {
    for (;;) {
      const start = this.#pos;
      let value: RespValue;
      try {
        const element = this.#element();
        if (element === ARRAY_STARTED) continue;
        value = element;
      } catch (err) {
        if (err !== INCOMPLETE) throw err;
        this.#pos = start;
        return undefined;
      }
      this.#replyBytes += this.#pos - start;
      // Hand the value to the arrays it completes, innermost first.
      for (;;) {
        const top = this.#stack.at(-1);
        if (!top) {
          this.#replyBytes = 0;
          if (this.#pos === this.#end) this.#reset();
          return { value };
        }
        top.items.push(value);
        if (--top.left > 0) break;
        this.#stack.pop();
        value = top.items;
      }
    }
  }

  // Everything read: start over at the front, and give back a buffer a large reply grew.
  #reset(): void {
    this.#pos = 0;
    this.#end = 0;
    if (this.#buf.length > 1024 * 1024) this.#buf = new Uint8Array(64 * 1024);
  }

  /** Index of the CR ending the line at #pos; throws INCOMPLETE when it has not arrived. */
  #lineEnd(): number {
    const buf = this.#buf;
    for (let i = this.#pos; i + 1 < this.#end; i++) {
      if (buf[i] === CR && buf[i + 1] === LF) return i;
    }
    if (this.#end - this.#pos > MAX_LINE) throw new ProtocolError("reply line too long");
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

  /** A bulk or array length: -1 (nil) or 0 up to the reply bound; anything else is not RESP2. */
  #length(): number {
    const n = this.#integer(10);
    if (n < -1) throw new ProtocolError("negative length in reply");
    if (n > MAX_REPLY_BYTES) throw new ProtocolError("reply too large");
    return n;
  }

  /** One scalar, or the header of a non-empty array (pushed as a frame). */
  #element(): RespValue | typeof ARRAY_STARTED {
    if (this.#pos >= this.#end) throw INCOMPLETE;
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
        if (this.#end < this.#pos + n + 2) throw INCOMPLETE;
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
        if (n === 0) return [];
        if (this.#stack.length >= MAX_REPLY_DEPTH) {
          throw new ProtocolError(`a reply nested deeper than ${MAX_REPLY_DEPTH}`);
        }
        this.#stack.push({ items: [], left: n });
        return ARRAY_STARTED;
      }
      default:
        throw new ProtocolError("unknown reply type");
    }
  }
}

const ARRAY_STARTED = Symbol("array started");
