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

/** Reads the whole body within MAX_BODY_BYTES and BODY_TIMEOUT_MS, as UTF-8 text. */
export async function readBody(req: Request): Promise<BodyResult> {
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > MAX_BODY_BYTES) return "too_large";
  const reader = req.body?.getReader();
  if (!reader) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Security: a trickled body would otherwise hold the request open forever.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"too_slow">((resolve) =>
    timer = setTimeout(() => resolve("too_slow"), BODY_TIMEOUT_MS)
  );
  try {
    for (;;) {
      // A client that closes before sending all it announced (Content-Length or
      // chunked) makes read() reject: the request is incomplete, not our fault.
      const chunk = await Promise.race([
        reader.read().catch(() => "cut_short" as const),
        deadline,
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
  } finally {
    clearTimeout(timer);
  }
  try {
    return UTF8.decode(joined(chunks, size));
  } catch {
    return "bad_encoding";
  }
}
