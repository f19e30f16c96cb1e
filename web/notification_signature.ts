/**
 * How a notification delivery is signed, and how a receiver checks it.
 *
 * Signature: `X-Kuberollouttrigger-Signature-256: sha256=<hex>`, the
 * lower-case hex HMAC-SHA256 keyed with the shared secret over the UTF-8 bytes
 * of `<X-Kuberollouttrigger-Timestamp>.<body as sent>`. As GitHub's
 * X-Hub-Signature-256, but covering the timestamp, so a captured delivery
 * cannot be replayed once it is older than the receiver's tolerance.
 */

import { Buffer } from "node:buffer";
import { createHmac, timingSafeEqual } from "node:crypto";

/** The headers of a delivery besides content-type and user-agent. */
export const NOTIFY_HEADERS = {
  event: "X-Kuberollouttrigger-Event",
  delivery: "X-Kuberollouttrigger-Delivery",
  timestamp: "X-Kuberollouttrigger-Timestamp",
  signature: "X-Kuberollouttrigger-Signature-256",
} as const;

const HEADER_TOKEN = /^[\x21-\x7e]{1,200}$/;
const TIMESTAMP = /^[0-9]{1,12}$/;
const SIGNATURE = /^sha256=([0-9a-f]{64})$/;

function hmac(secret: string, timestamp: string, body: string): Buffer {
  // An empty key would sign with nothing a receiver could not also compute.
  if (secret === "") throw new Error("The notification secret is empty");
  return createHmac("sha256", secret).update(`${timestamp}.${body}`, "utf8").digest();
}

/** Headers for a delivery; the signature header only when a secret is given. */
export function notificationHeaders(options: {
  eventId: string;
  deliveryId: string;
  body: string;
  timestampSeconds: number;
  secret?: string;
}): Record<string, string> {
  const { eventId, deliveryId, body, timestampSeconds, secret } = options;
  // Security: a header value with CR/LF or a space could add headers or split one.
  for (const [name, value] of [["eventId", eventId], ["deliveryId", deliveryId]]) {
    if (!HEADER_TOKEN.test(value)) {
      throw new Error(`${name} must be 1-200 visible ASCII characters`);
    }
  }
  const timestamp = String(timestampSeconds);
  if (!Number.isSafeInteger(timestampSeconds) || !TIMESTAMP.test(timestamp)) {
    throw new Error("timestampSeconds must be whole unix seconds");
  }
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    "User-Agent": "kuberollouttrigger",
    [NOTIFY_HEADERS.event]: eventId,
    [NOTIFY_HEADERS.delivery]: deliveryId,
    [NOTIFY_HEADERS.timestamp]: timestamp,
  };
  if (secret !== undefined) {
    headers[NOTIFY_HEADERS.signature] = `sha256=${hmac(secret, timestamp, body).toString("hex")}`;
  }
  return headers;
}

/** A header by name in any case; two spellings of it in a record are ambiguous, so none. */
function headerValue(headers: Headers | Record<string, string>, name: string): string | undefined {
  if (headers instanceof Headers) return headers.get(name) ?? undefined;
  const keys = Object.keys(headers).filter((k) => k.toLowerCase() === name.toLowerCase());
  const value = keys.length === 1 ? headers[keys[0]] : undefined;
  return typeof value === "string" ? value : undefined;
}

/**
 * A receiver's check (our reference implementation): true when the signature
 * matches the exact body and timestamp, compared in constant time, and the
 * timestamp is within toleranceSeconds (default 300) of nowSeconds.
 */
export function verifyNotification(options: {
  secret: string;
  body: string;
  headers: Headers | Record<string, string>;
  nowSeconds: number;
  toleranceSeconds?: number;
}): boolean {
  const tolerance = options.toleranceSeconds ?? 300;
  if (!(tolerance >= 0)) throw new Error("toleranceSeconds must be zero or more");
  const timestamp = headerValue(options.headers, NOTIFY_HEADERS.timestamp) ?? "";
  const given = SIGNATURE.exec(headerValue(options.headers, NOTIFY_HEADERS.signature) ?? "");
  // Written so that a NaN clock fails: NaN <= tolerance is false.
  const fresh = Math.abs(options.nowSeconds - Number(timestamp)) <= tolerance;
  const expected = hmac(options.secret, timestamp, options.body);
  if (!TIMESTAMP.test(timestamp) || !given || !fresh) return false;
  // Security: constant time, so the response time does not reveal how much of a guess matched.
  return timingSafeEqual(expected, Buffer.from(given[1], "hex"));
}
