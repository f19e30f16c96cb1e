/**
 * Every `reason` tag the product writes on a log line or a metric label, in one
 * table, each with the line docs/operations.md shows for it (`deno task docs`
 * writes those tables; tests/docs_test.ts fails on drift). Code names a reason as
 * `Reason.missing_token`, so a typo is a type error, and AuthError accepts only
 * denial reasons. To add one: a row here, then `deno task docs`. A new kind of
 * reason gets a row in REASON_KINDS, which gives it its own table in the docs.
 */

/** The groups reasons are documented in, with the sentence that introduces each list. */
import { AppError } from "../shared/errors.ts";

export const REASON_KINDS = {
  // One line each (at most 100 characters): deno fmt would wrap a longer one.
  denial: "Denial `reason` values on `request` lines (each answered `403 access denied`):",
  request: "Other `reason` values on `request` lines (not denials):",
} as const;

/** A group of reasons. */
export type ReasonKind = keyof typeof REASON_KINDS;

interface ReasonRow {
  kind: ReasonKind;
  /** One line for the operator: what happened and, where useful, what to check. */
  doc: string;
}

/** The reasons, in the order the docs list them. */
export const REASONS = {
  missing_token: { kind: "denial", doc: "no `Authorization` header" },
  malformed_authorization: {
    kind: "denial",
    doc: "`Authorization` is not exactly one `Bearer <token>` (two headers arrive joined and fail)",
  },
  malformed: {
    kind: "denial",
    doc: "the token is too long, not a compact JWS, or its header or claims are not a JSON object",
  },
  duplicate_header_member: { kind: "denial", doc: "the token's header names a member twice" },
  duplicate_claims_member: { kind: "denial", doc: "the token's claims set names a member twice" },
  alg_not_allowed: { kind: "denial", doc: "the token is not signed with RS256" },
  untrusted_header_key: {
    kind: "denial",
    doc: "the token's header carries its own key or key location (`jku`, `x5u`, `jwk`, `x5c`)",
  },
  unsupported_header: {
    kind: "denial",
    doc: "the token's header carries `crit` or `b64`, which change how the signature is read",
  },
  missing_kid: { kind: "denial", doc: "the token's header has no usable `kid`" },
  unknown_kid: {
    kind: "denial",
    doc: "no key the issuer publishes has the token's `kid`",
  },
  bad_signature: { kind: "denial", doc: "the signature does not verify" },
  expired: { kind: "denial", doc: "`exp` is past (beyond the clock tolerance)" },
  invalid_token: {
    kind: "denial",
    doc: "the verifier refused the token for another reason (the `detail` names jose's code)",
  },
  claim_iss: { kind: "denial", doc: "`iss` is missing or not the configured issuer" },
  claim_aud: {
    kind: "denial",
    doc: "`aud` is missing or not exactly the configured audience (the workflow asked for another)",
  },
  claim_exp: { kind: "denial", doc: "`exp` is missing or not a finite NumericDate" },
  claim_iat: {
    kind: "denial",
    doc: "`iat` is missing, not a finite NumericDate, or older than the maximum token age",
  },
  claim_nbf: { kind: "denial", doc: "`nbf` is in the future or not a finite NumericDate" },
  claim_jti: { kind: "denial", doc: "`jti` is missing or not a string" },
  claim_repository_owner: {
    kind: "denial",
    doc: "`repository_owner` is missing or not an ASCII GitHub name",
  },
  claim_repository: {
    kind: "denial",
    doc: "`repository` is missing or not `<owner>/<name>` in ASCII",
  },
  claim_repository_id: { kind: "denial", doc: "`repository_id` is missing or not numeric" },
  claim_ref: { kind: "denial", doc: "`ref` is missing while `ALLOWED_REFS` is set" },
  claim_event_name: {
    kind: "denial",
    doc: "`event_name` is missing while `ALLOWED_EVENT_NAMES` is set",
  },
  claim_environment: {
    kind: "denial",
    doc: "`environment` is missing while `ALLOWED_ENVIRONMENTS` is set (the job names none)",
  },
  claim_workflow_ref: {
    kind: "denial",
    doc: "`workflow_ref` is missing while `ALLOWED_WORKFLOW_REFS` is set",
  },
  claim_job_workflow_ref: {
    kind: "denial",
    doc: "`job_workflow_ref` is missing while `ALLOWED_JOB_WORKFLOW_REFS` is set",
  },
  claim_repository_owner_id: {
    kind: "denial",
    doc: "`repository_owner_id` is missing while `ALLOWED_OWNER_IDS` is set",
  },
  org_not_allowed: { kind: "denial", doc: "`repository_owner` is not in `ALLOWED_ORGS`" },
  repository_mismatch: {
    kind: "denial",
    doc: "`repository` is not owned by `repository_owner`",
  },
  repository_not_allowed: {
    kind: "denial",
    doc: "`repository` is not in `ALLOWED_REPOSITORIES`",
  },
  ref_not_allowed: { kind: "denial", doc: "`ref` is not in `ALLOWED_REFS`" },
  event_name_not_allowed: { kind: "denial", doc: "`event_name` is not in `ALLOWED_EVENT_NAMES`" },
  environment_not_allowed: {
    kind: "denial",
    doc: "`environment` is not in `ALLOWED_ENVIRONMENTS`",
  },
  workflow_ref_not_allowed: {
    kind: "denial",
    doc: "`workflow_ref` is not in `ALLOWED_WORKFLOW_REFS`",
  },
  job_workflow_ref_not_allowed: {
    kind: "denial",
    doc: "`job_workflow_ref` is not in `ALLOWED_JOB_WORKFLOW_REFS`",
  },
  owner_id_not_allowed: {
    kind: "denial",
    doc: "`repository_owner_id` is not in `ALLOWED_OWNER_IDS`",
  },
  repository_id_not_allowed: {
    kind: "denial",
    doc: "`repository_id` is not in `ALLOWED_REPOSITORY_IDS`",
  },
  image_not_granted: {
    kind: "denial",
    doc:
      "no rule of `REPOSITORY_RULES` gives the repository the event's image (`detail` says which)",
  },
  sender_unnamed: {
    kind: "denial",
    doc: "`ref` or `workflow_ref` is missing or not printable: the event could not say who sent it",
  },
  replay_different_body: {
    kind: "denial",
    doc: "the token was already used with a different body (a stolen token replayed)",
  },
  dev_token_not_loopback: {
    kind: "denial",
    doc: "dev mode only: `POST /dev/token` came from an address that is not loopback",
  },
  replay_in_progress: {
    kind: "request",
    doc: "`409`: the first request with the token was still being handled; retry shortly",
  },
  body_incomplete: {
    kind: "request",
    doc: "`400`: the client stopped before the body was complete",
  },
  bad_host: { kind: "request", doc: "`400`: the `Host` header is not `host[:port]`" },
  too_many_waiters: {
    kind: "request",
    doc: "`429`: too many `GET /event/<id>?wait=` requests are waiting on this replica",
  },
  repository_waiters: {
    kind: "request",
    doc: "`429`: this repository already holds its share, a quarter of `STATUS_MAX_WAITERS`",
  },
  shutting_down: {
    kind: "request",
    doc: "`503`: the request came after SIGTERM, while web finished the ones in progress",
  },
  client_gone: {
    kind: "request",
    doc: "`499` (never sent): the client left while its `?wait=` read was held; its slot is free",
  },
} as const satisfies Record<string, ReasonRow>;

/** Any reason the product writes. */
export type Reason = keyof typeof REASONS;

/** The reasons of one kind. */
export type ReasonOf<K extends ReasonKind> = {
  [R in Reason]: (typeof REASONS)[R]["kind"] extends K ? R : never;
}[Reason];

/** Why a request was denied (403); the only reasons AuthError takes. */
export type DenialReason = ReasonOf<"denial">;

/** Each reason by its own name, for use sites: `Reason.missing_token`. */
export const Reason: { readonly [R in Reason]: R } = Object.freeze(
  Object.fromEntries(Object.keys(REASONS).map((r) => [r, r])) as { [R in Reason]: R },
);

/** True when `name` is a reason of the table (for names built at run time). */
export function isReason(name: string): name is Reason {
  return Object.hasOwn(REASONS, name);
}

/**
 * The denial for a rejected claim: `claim_<name>` when the table has it, else
 * `invalid_token`, so a claim name from a library can never make a tag the
 * docs do not list.
 */
export function claimDenial(name: string): DenialReason {
  const reason = `claim_${name}`;
  return isReason(reason) && REASONS[reason].kind === "denial"
    ? reason as DenialReason
    : Reason.invalid_token;
}

/** The Markdown tables of docs/operations.md: one per kind, each reason with its line. */
export function renderReasonTables(): string {
  return (Object.keys(REASON_KINDS) as ReasonKind[]).map((kind) => {
    const rows = (Object.entries(REASONS) as [Reason, ReasonRow][])
      .filter(([, row]) => row.kind === kind)
      .map(([name, row]) => `| \`${name}\` | ${row.doc} |`);
    return [REASON_KINDS[kind], "", "| reason | meaning |", "| --- | --- |", ...rows].join("\n");
  }).join("\n\n");
}

/**
 * An authentication or authorization failure. `reason` is a short machine-readable
 * tag for metrics, `detail` is for the log only: neither ever reaches the caller,
 * and neither may contain the token.
 */
export class AuthError extends AppError {
  readonly reason: DenialReason;

  constructor(reason: DenialReason, detail: string, options?: { cause?: unknown }) {
    super("ERR_AUTH", detail, options);
    this.name = "AuthError";
    this.reason = reason;
  }
}
