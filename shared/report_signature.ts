/**
 * The signed cluster report both modes agree on (Ed25519, RFC 8032): each
 * worker cluster signs what it writes for web with its own REPORT_SIGNING_KEY
 * (worker/feedback/store.ts), and web, given every cluster's public keys in
 * REPORT_VERIFY_KEYS, ignores a report that its cluster did not sign
 * (web/report_verifier.ts). So write access to Valkey alone cannot make web
 * answer `succeeded`: it can delete or withhold reports (a delay that ends
 * `no_report`), or put back an earlier report of the same cluster for the
 * same event (one that was true, and no greener: an event's report only moves
 * from in progress to its final state).
 *
 * Wire format of a signed report (the value of the record's `cluster:<name>`
 * field, read with the duplicate-rejecting parser):
 *   {"kid":"<43 chars>","report":"<the report JSON, as a string>","sig":"<86 chars>"}
 * The signature covers REPORT_CONTEXT, the event id, a newline and the exact
 * bytes of `report`; the report names its cluster, which must be the field's,
 * and `kid` must be one of that cluster's keys. A report without the envelope
 * is unsigned (what a worker without a key writes).
 */

import { AppError } from "./errors.ts";
import { KEY_ID, SIGNATURE } from "./event_signature.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** Domain separation prefix of a report signature. */
export const REPORT_CONTEXT = "kuberollouttrigger report v1\n";
/** Longest report field read at all; a report of 50 named Deployments is far shorter. */
export const MAX_REPORT_FIELD = 131_072;

const encoder = new TextEncoder();
const ENVELOPE_KEYS = ["kid", "report", "sig"];

/** The bytes a report signature covers. */
export function reportBytes(eventId: string, reportJson: string): Uint8Array<ArrayBuffer> {
  // The id is a UUID: nothing can move across the newline.
  return encoder.encode(`${REPORT_CONTEXT}${eventId}\n${reportJson}`);
}

/** The field value a signing worker writes. */
export function encodeSignedReport(reportJson: string, kid: string, sig: string): string {
  return JSON.stringify({ kid, report: reportJson, sig });
}

/** A report field split into the report and, when signed, its signature. */
export type OpenedReport =
  | { signed: false; report: string }
  | { signed: true; report: string; kid: string; sig: Uint8Array<ArrayBuffer> };

function malformed(what: string): AppError {
  return new AppError("ERR_STATUS_CORRUPT", `signed report is malformed: ${what}`);
}

/**
 * Tells a signed report from an unsigned one: an object with a `sig` or
 * `kid` member must be exactly the envelope, or this throws; anything else is
 * the report itself (its parser judges it). Never quotes the value.
 */
export function openReport(raw: string): OpenedReport {
  if (raw.length > MAX_REPORT_FIELD) throw malformed(`longer than ${MAX_REPORT_FIELD} bytes`);
  let value: JsonValue;
  try {
    value = parseStrictJson(raw);
  } catch {
    return { signed: false, report: raw };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    return { signed: false, report: raw };
  }
  const keys = Object.keys(value);
  if (!keys.some((k) => k === "sig" || k === "kid")) return { signed: false, report: raw };
  if (keys.length !== ENVELOPE_KEYS.length || !ENVELOPE_KEYS.every((k) => keys.includes(k))) {
    throw malformed('members must be exactly "kid", "report" and "sig"');
  }
  const { kid, report, sig } = value;
  if (typeof report !== "string") throw malformed('"report" must be a string');
  if (typeof kid !== "string" || !KEY_ID.test(kid)) throw malformed('"kid" is not a key id');
  if (typeof sig !== "string" || !SIGNATURE.test(sig)) {
    throw malformed('"sig" is not a base64url Ed25519 signature');
  }
  return {
    signed: true,
    report,
    kid,
    sig: Uint8Array.fromBase64(sig, { alphabet: "base64url" }),
  };
}
