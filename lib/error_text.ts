/**
 * Thrown values as text for a log line. Security: a library's message about
 * input it could not parse may quote that input (a token, a key, a body), so
 * such errors are described by position (jsonErrorPosition), never passed
 * through describeError.
 */

/**
 * Returns a short, single-line description of any thrown value, for logs. It
 * shortens but does not redact: only pass errors whose message cannot quote
 * secret input.
 */
export function describeError(err: unknown): string {
  if (err instanceof Error) return oneLine(err.message || err.name);
  return oneLine(String(err));
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, " ").trim().slice(0, 500);
}

/**
 * Where a JSON parser (JSON.parse or parseStrictJson) stopped, as " at offset N",
 * or "" when its message says no position. Security: the parser's own message
 * may quote the document, which can hold a secret; this never returns any of it.
 */
export function jsonErrorPosition(err: unknown): string {
  const message = err instanceof Error ? err.message : "";
  // The last mention: a quoted key or snippet before it may itself say "at offset 7".
  const all = [...message.matchAll(/\b(?:at offset|at position) (\d{1,9})\b/g)];
  return all.length ? ` at offset ${all[all.length - 1][1]}` : "";
}
