/**
 * Authorization of verified GitHub claims: the repository owner must be an
 * allowed org, and each optional narrower rule that is configured must hold.
 * Input is claims from a verified token; a rule is only as good as the claim,
 * so every value is type-checked as the string GitHub sends.
 */

import { AuthError } from "../shared/errors.ts";
import type { GitHubClaims } from "./oidc.ts";

/** The rules, as parsed from settings (orgs and repositories already lower-cased). */
export interface PolicyOptions {
  allowedOrgs: readonly string[];
  allowedRepositories: readonly string[];
  allowedRefs: readonly string[];
  allowedEventNames: readonly string[];
  allowedEnvironments: readonly string[];
  allowedWorkflowRefs: readonly string[];
  allowedJobWorkflowRefs: readonly string[];
  allowedOwnerIds: readonly string[];
  allowedRepositoryIds: readonly string[];
}

/** Throws AuthError unless the claims satisfy every configured rule. */
export type Authorizer = (claims: GitHubClaims) => void;

function claim(claims: GitHubClaims, name: keyof GitHubClaims): string {
  const value = claims[name];
  if (typeof value !== "string" || value === "") {
    throw new AuthError(
      `claim_${String(name)}`,
      `claim ${String(name)} is missing or not a string`,
    );
  }
  return value;
}

/** Creates the authorizer for a fixed set of rules. */
export function createAuthorizer(options: PolicyOptions): Authorizer {
  const rules: [keyof GitHubClaims, readonly string[], string][] = [
    ["ref", options.allowedRefs, "ref_not_allowed"],
    ["event_name", options.allowedEventNames, "event_name_not_allowed"],
    ["environment", options.allowedEnvironments, "environment_not_allowed"],
    ["workflow_ref", options.allowedWorkflowRefs, "workflow_ref_not_allowed"],
    ["job_workflow_ref", options.allowedJobWorkflowRefs, "job_workflow_ref_not_allowed"],
    ["repository_owner_id", options.allowedOwnerIds, "owner_id_not_allowed"],
    ["repository_id", options.allowedRepositoryIds, "repository_id_not_allowed"],
  ];
  return (claims) => {
    const owner = claim(claims, "repository_owner").toLowerCase();
    if (!options.allowedOrgs.includes(owner)) {
      throw new AuthError("org_not_allowed", `repository_owner ${owner} is not an allowed org`);
    }
    const repository = claim(claims, "repository").toLowerCase();
    if (!repository.startsWith(owner + "/")) {
      throw new AuthError(
        "repository_mismatch",
        `repository ${repository} is not owned by ${owner}`,
      );
    }
    if (
      options.allowedRepositories.length > 0 && !options.allowedRepositories.includes(repository)
    ) {
      throw new AuthError("repository_not_allowed", `repository ${repository} is not allowed`);
    }
    for (const [name, allowed, reason] of rules) {
      if (allowed.length === 0) continue;
      const value = claim(claims, name);
      if (!allowed.includes(value)) {
        throw new AuthError(
          reason,
          `${String(name)} ${JSON.stringify(value.slice(0, 200))} is not allowed`,
        );
      }
    }
  };
}
