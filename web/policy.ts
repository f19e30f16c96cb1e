/**
 * Authorization of verified GitHub claims: the repository owner must be an
 * allowed org, the repository must be `<owner>/<name>` of that same owner, and
 * each optional narrower rule that is configured must hold. Input is claims
 * from a verified token; a rule is only as good as the claim, so every value is
 * type-checked as the string GitHub sends, and names as the ASCII GitHub allows.
 */

import type { WebConfig } from "../config/settings.ts";
import { AuthError, claimDenial, type DenialReason, Reason } from "./reasons.ts";
import { asciiLowerCase, isGitHubName } from "../lib/setting_values.ts";
import type { GitHubClaims } from "./oidc.ts";

/** The rules, as the settings table parses them (orgs and repositories ASCII-lower-cased). */
export type PolicyOptions = Readonly<
  Pick<
    WebConfig,
    | "allowedOrgs"
    | "allowedRepositories"
    | "allowedRefs"
    | "allowedEventNames"
    | "allowedEnvironments"
    | "allowedWorkflowRefs"
    | "allowedJobWorkflowRefs"
    | "allowedOwnerIds"
    | "allowedRepositoryIds"
  >
>;

/** Throws AuthError unless the claims satisfy every configured rule. */
export type Authorizer = (claims: GitHubClaims) => void;

function claim(claims: GitHubClaims, name: keyof GitHubClaims): string {
  const value = claims[name];
  if (typeof value !== "string" || value === "") {
    throw new AuthError(
      claimDenial(String(name)),
      `claim ${String(name)} is missing or not a string`,
    );
  }
  return value;
}

const quote = (value: string) => JSON.stringify(value.slice(0, 200));

/** The owner, ASCII-lower-cased; refuses anything that is not a GitHub name. */
function ownerOf(claims: GitHubClaims): string {
  const owner = claim(claims, "repository_owner");
  // Security: GitHub names are ASCII. Anything else is refused before any
  // case folding, so no Unicode letter can fold onto an allowed org.
  if (!isGitHubName(owner)) {
    throw new AuthError(
      Reason.claim_repository_owner,
      `repository_owner ${quote(owner)} is not an ASCII GitHub name`,
    );
  }
  return asciiLowerCase(owner);
}

/** `<owner>/<name>` of exactly `owner`, ASCII-lower-cased. */
function repositoryOf(claims: GitHubClaims, owner: string): string {
  const repository = claim(claims, "repository");
  const [ownerPart, name, ...rest] = repository.split("/");
  if (name === undefined || rest.length > 0 || !isGitHubName(ownerPart) || !isGitHubName(name)) {
    throw new AuthError(
      Reason.claim_repository,
      `repository ${quote(repository)} is not <owner>/<name> in ASCII`,
    );
  }
  if (asciiLowerCase(ownerPart) !== owner) {
    throw new AuthError(
      Reason.repository_mismatch,
      `repository ${quote(repository)} is not owned by ${owner}`,
    );
  }
  return asciiLowerCase(repository);
}

/** Creates the authorizer for a fixed set of rules. */
export function createAuthorizer(options: PolicyOptions): Authorizer {
  const rules: [keyof GitHubClaims, readonly string[], DenialReason][] = [
    ["ref", options.allowedRefs, Reason.ref_not_allowed],
    ["event_name", options.allowedEventNames, Reason.event_name_not_allowed],
    ["environment", options.allowedEnvironments, Reason.environment_not_allowed],
    ["workflow_ref", options.allowedWorkflowRefs, Reason.workflow_ref_not_allowed],
    ["job_workflow_ref", options.allowedJobWorkflowRefs, Reason.job_workflow_ref_not_allowed],
    ["repository_owner_id", options.allowedOwnerIds, Reason.owner_id_not_allowed],
    ["repository_id", options.allowedRepositoryIds, Reason.repository_id_not_allowed],
  ];
  return (claims) => {
    const owner = ownerOf(claims);
    if (!options.allowedOrgs.includes(owner)) {
      throw new AuthError(
        Reason.org_not_allowed,
        `repository_owner ${owner} is not an allowed org`,
      );
    }
    const repository = repositoryOf(claims, owner);
    if (
      options.allowedRepositories.length > 0 && !options.allowedRepositories.includes(repository)
    ) {
      throw new AuthError(Reason.repository_not_allowed, `repository ${repository} is not allowed`);
    }
    for (const [name, allowed, reason] of rules) {
      if (allowed.length === 0) continue;
      const value = claim(claims, name);
      if (!allowed.includes(value)) {
        throw new AuthError(reason, `${String(name)} ${quote(value)} is not allowed`);
      }
    }
  };
}
