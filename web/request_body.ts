/**
 * Reading a request body as web accepts it: as sent (no content or transfer
 * coding but chunked framing), bounded in size and in time, strict UTF-8. The
 * body is untrusted; nothing here interprets it.
 */

/** Largest accepted POST body: an image and 32 tags fit several times over. */
export const MAX_BODY_BYTES = 8 * 1024;
/** Longest time a client may take to send the body once the token is verified. */
export const BODY_TIMEOUT_MS = 10_000;

/** True for `application/json`, optionally with a UTF-8 charset. */
export function isJsonContentType(value: string | null): boolean {
  if (!value) return false;
  const [type, ...params] = value.split(";").map((p) => p.trim().toLowerCase());
  if (type !== "application/json") return false;
  return params.every((p) => p === "" || /^charset="?utf-8"?$/.test(p));
}

/** Why a body could not be had, or its text. */
export type BodyResult = string | "too_large" | "bad_encoding" | "too_slow" | "cut_short";

/** What is wrong with the request's codings, if anything: web reads the body only as sent (RFC 9110 §8.4, RFC 9112 §6.1). */
export function codingProblem(req: Request): string | undefined {
  const content = req.headers.get("content-encoding");
  // Security: a compressed body would otherwise be parsed (and published) as plain.
  if (content !== null && content.trim().toLowerCase() !== "identity") {
    return "content encoding must be identity";
  }
  // Deno decodes chunked framing only; any other transfer coding reaches us raw.
  const transfer = req.headers.get("transfer-encoding");
  if (transfer !== null && transfer.trim().toLowerCase() !== "chunked") {
    return "transfer encoding must be chunked or absent";
  }
  return undefined;
}

// decode() without { stream: true } keeps no state between calls: one decoder serves every body.
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** The chunks as one array; the one chunk itself when there is one (the usual small body). */
function joined(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const all = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    all.set(c, offset);
    offset += c.length;
  }
  return all;
}

/** Reads request bodies as web accepts them. */
export interface BodyReader {
  /** The whole body within MAX_BODY_BYTES and the timeout, as UTF-8 text, or why not. */
  read(req: Request): Promise<BodyResult>;
}

/** Options for createBodyReader. */
export interface BodyReaderOptions {
  /** Longest a client may take to send the body; default BODY_TIMEOUT_MS. */
  timeoutMs?: number;
  /** How often overdue reads are looked for; default a twentieth of the timeout. */
  tickMs?: number;
  now?: () => number;
}

/** A read's deadline: `expired` resolves when it passes, unless `settle` came first. */
interface Deadline {
  at: number;
  expired: Promise<"too_slow">;
  expire?: (value: "too_slow") => void;
  settle(): void;
}

const DECLARED_LENGTH = /^[0-9]{1,10}$/;

/**
 * Creates the reader. Security: a trickled body would otherwise hold the
 * request open forever, so every read has a deadline. One ticker serves every
 * read in flight (a timer per request cost more than reading the body): all
 * reads have the same timeout, so deadlines come in the order reads began and
 * the sweep stops at the first that is still ahead. The ticker keeps the
 * process alive only while a read is in flight, and stops once none is left.
 */
export function createBodyReader(options: BodyReaderOptions = {}): BodyReader {
  const timeoutMs = options.timeoutMs ?? BODY_TIMEOUT_MS;
  const tickMs = options.tickMs ?? Math.max(10, timeoutMs / 20);
  const now = options.now ?? (() => performance.now());
  let queue: (Deadline | undefined)[] = [];
  let head = 0;
  let ticker: ReturnType<typeof setInterval> | undefined;
  // Reads not yet finished: while there are any, the ticker keeps the process
  // alive (their deadlines must come); with none it does not.
  let inFlight = 0;
  const finished = () => {
    if (--inFlight === 0 && ticker !== undefined) Deno.unrefTimer(ticker);
  };

  const sweep = () => {
    const t = now();
    for (; head < queue.length; head++) {
      const d = queue[head]!;
      if (d.expire && d.at > t) break;
      if (d.expire) {
        d.expire("too_slow");
        d.expire = undefined;
        finished();
      }
      queue[head] = undefined;
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
      clearInterval(ticker);
      ticker = undefined;
    } else if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  };

  const deadline = (): Deadline => {
    const { promise, resolve } = Promise.withResolvers<"too_slow">();
    const d: Deadline = {
      at: now() + timeoutMs,
      expired: promise,
      expire: resolve,
      settle: () => {
        if (!d.expire) return;
        d.expire = undefined;
        finished();
      },
    };
    queue.push(d);
    ticker ??= setInterval(sweep, tickMs);
    if (++inFlight === 1) Deno.refTimer(ticker);
    return d;
  };

  return {
    async read(req) {
      const declared = req.headers.get("content-length");
      if (declared !== null && Number(declared) > MAX_BODY_BYTES) return "too_large";
      if (!req.body) return "";
      const d = deadline();
      try {
        // A declared length with no other framing bounds the body (the HTTP
        // layer delivers exactly that many bytes or fails the read): it is read
        // in one piece, without a stream of chunks.
        const whole = declared !== null && DECLARED_LENGTH.test(declared) &&
          req.headers.get("transfer-encoding") === null;
        const got = whole
          ? await readDeclared(req, Number(declared), d.expired)
          : await readChunks(req.body.getReader(), d.expired);
        return typeof got === "string" ? got : decodeUtf8(got);
      } finally {
        d.settle();
      }
    },
  };
}

function decodeUtf8(bytes: Uint8Array): string | "bad_encoding" {
  try {
    return UTF8.decode(bytes);
  } catch {
    return "bad_encoding";
  }
}

/** A body whose length was declared, read whole. */
async function readDeclared(
  req: Request,
  length: number,
  expired: Promise<"too_slow">,
): Promise<Uint8Array | "too_large" | "too_slow" | "cut_short"> {
  const got = await Promise.race([
    // A client that closes before sending all it announced makes the read reject.
    req.bytes().catch(() => "cut_short" as const),
    expired,
  ]);
  if (typeof got === "string") return got;
  // The HTTP layer enforces the length; a Request built another way may not.
  if (got.length > MAX_BODY_BYTES) return "too_large";
  if (got.length !== length) return "cut_short";
  return got;
}

/** A body of chunks (chunked framing, or none declared), read up to MAX_BODY_BYTES. */
async function readChunks(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  expired: Promise<"too_slow">,
): Promise<Uint8Array | "too_large" | "too_slow" | "cut_short"> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    // A client that closes before sending all it announced makes read() reject:
    // the request is incomplete, not our fault.
    const chunk = await Promise.race([
      reader.read().catch(() => "cut_short" as const),
      expired,
    ]);
    if (chunk === "cut_short") return "cut_short";
    if (chunk === "too_slow") {
      await reader.cancel().catch(() => {});
      return "too_slow";
    }
    if (chunk.done) break;
    if (size + chunk.value.length > MAX_BODY_BYTES) {
      await reader.cancel().catch(() => {});
      return "too_large";
    }
    chunks.push(chunk.value);
    size += chunk.value.length;
  }
  return joined(chunks, size);
}
