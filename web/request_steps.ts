/**
 * The steps every authenticated route begins with: read one Bearer token,
 * verify it, record the claims an operator needs in the request log, and
 * apply the claim policy. POST /event and GET /event/<id> compose the same
 * steps, so a rule added here holds for both.
 */

import { createHash } from "node:crypto";
import { AuthError, Reason } from "./reasons.ts";
import type { LogFields } from "../lib/log.ts";
import type { GitHubClaims, TokenVerifier } from "./oidc.ts";
import type { Authorizer } from "./policy.ts";

const BEARER = /^bearer +([^\s,]+)$/i;

/** Reads the Bearer token from the Authorization header; throws AuthError. */
export function bearerToken(req: Request): string {
  const header = req.headers.get("authorization");
  if (header === null) throw new AuthError(Reason.missing_token, "no Authorization header");
  const match = BEARER.exec(header);
  // Two Authorization headers arrive joined by ", " and fail this match.
  if (!match) {
    throw new AuthError(Reason.malformed_authorization, "Authorization is not one Bearer token");
  }
  return match[1];
}

/**
 * The claims that tie a request to its workflow run, for the log: never the
 * token, and only string claims, cut to a bounded length.
 */
export function auditFields(claims: GitHubClaims): LogFields {
  const pick = (v: unknown) => typeof v === "string" ? v.slice(0, 300) : undefined;
  return {
    repository: pick(claims.repository),
    repository_owner: pick(claims.repository_owner),
    repository_id: pick(claims.repository_id),
    ref: pick(claims.ref),
    sha: pick(claims.sha),
    event_name: pick(claims.event_name),
    workflow_ref: pick(claims.workflow_ref),
    run_id: pick(claims.run_id),
    run_attempt: pick(claims.run_attempt),
    actor: pick(claims.actor),
    token_jti: pick(claims.jti),
  };
}

/** Verifies the request's token and applies the policy; resolves to the claims. */
export type Authenticate = (req: Request, log: LogFields) => Promise<GitHubClaims>;

/** Composes bearer parsing, verification, audit logging and authorization. */
export function createAuthenticate(verify: TokenVerifier, authorize: Authorizer): Authenticate {
  return async (req, log) => {
    const claims = await verify(bearerToken(req));
    Object.assign(log, auditFields(claims));
    authorize(claims);
    return claims;
  };
}

/**
 * What binds a status record to the repository that posted its event: a hash
 * of the numeric `repository_id` claim, which survives renames and transfers
 * and is never stored in clear. Throws AuthError when the claim is unusable.
 */
export function repositoryBinding(claims: GitHubClaims): string {
  const id = claims.repository_id;
  if (typeof id !== "string" || !/^[0-9]{1,20}$/.test(id)) {
    throw new AuthError(
      Reason.claim_repository_id,
      "claim repository_id is missing or not numeric",
    );
  }
  return repositoryHash(id);
}

/** The binding's hash of a numeric repository id (also checks a notification's audit fields). */
export function repositoryHash(id: string): string {
  return createHash("sha256").update(`github-repository-id:${id}`).digest("hex");
}
