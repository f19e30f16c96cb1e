/**
 * Who sent an event: the identity of the workflow run whose verified token
 * web accepted, as web signs it into the event (shared/event_signature.ts), so
 * a cluster can decide for itself which repositories may restart what
 * (worker/deployment_access.ts). Public claims only: no token, nothing secret.
 * A worker reads it only from a message whose signature verified; an unsigned
 * message has no sender.
 */

import { asciiLowerCase, isGitHubName } from "../lib/setting_values.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** The sending workflow run's identity. */
export interface Sender {
  /** `owner/name`, ASCII-lower-cased (GitHub names are case-insensitive). */
  repository: string;
  /** The numeric `repository_id` claim, as a string: survives renames and transfers. */
  repositoryId: string;
  /** The `ref` claim, e.g. `refs/heads/main`. */
  ref: string;
  /** The `environment` claim when the job runs in one. */
  environment?: string;
  /** The `workflow_ref` claim, e.g. `acme/app/.github/workflows/release.yml@refs/heads/main`. */
  workflowRef: string;
}

/** Longest claim value carried (GitHub's are far shorter). */
export const MAX_SENDER_VALUE = 512;
/** Longest encoded sender: what a worker reads (escaping can double a value's length). */
export const MAX_SENDER_TEXT = 2048;
const REPOSITORY_ID = /^[0-9]{1,20}$/;
// Refs, workflow refs and environments may hold spaces and any letter (a branch named in
// Japanese, a workflow file with a space); never control or format characters, which could
// hide text in a log or a Kubernetes Event.
const VALUE = /^[^\p{Cc}\p{Cf}\u2028\u2029]{1,512}$/u;

/** True when `repository` is `<owner>/<name>` of ASCII GitHub names. */
export function isOwnerName(repository: string): boolean {
  const [owner, name, ...rest] = repository.split("/");
  return name !== undefined && rest.length === 0 && isGitHubName(owner) && isGitHubName(name);
}

/**
 * The sender from verified claims, or why they cannot name one (web checks the
 * same claims before: this refuses only what authorization already refused).
 */
export function senderOf(claims: { readonly [claim: string]: unknown }): Sender | string {
  const { repository, repository_id: id, ref, environment, workflow_ref: workflowRef } = claims;
  if (typeof repository !== "string" || !isOwnerName(repository)) {
    return "claim repository is not owner/name";
  }
  if (typeof id !== "string" || !REPOSITORY_ID.test(id)) {
    return "claim repository_id is not numeric";
  }
  if (typeof ref !== "string" || !VALUE.test(ref)) return "claim ref is missing or not printable";
  if (typeof workflowRef !== "string" || !VALUE.test(workflowRef)) {
    return "claim workflow_ref is missing or not printable";
  }
  const sender: Sender = {
    repository: asciiLowerCase(repository),
    repositoryId: id,
    ref,
    workflowRef,
  };
  if (environment !== undefined && environment !== "") {
    if (typeof environment !== "string" || !VALUE.test(environment)) {
      return "claim environment is not a printable string";
    }
    sender.environment = environment;
  }
  // Web must never sign a sender a worker would refuse to read.
  if (encodeSender(sender).length > MAX_SENDER_TEXT) {
    return "claims are too long to name the sender";
  }
  return sender;
}

/** The sender as signed and sent: fixed member order, so the bytes are the same everywhere. */
export function encodeSender(sender: Sender): string {
  const { repository, repositoryId, ref, environment, workflowRef } = sender;
  return JSON.stringify({
    repository,
    repository_id: repositoryId,
    ref,
    ...(environment === undefined ? {} : { environment }),
    workflow_ref: workflowRef,
  });
}

/** Reads a sender back; throws a one-line Error (the text is untrusted until its signature verified). */
export function parseSender(text: string): Sender {
  if (text.length > MAX_SENDER_TEXT) throw new Error("sender is too long");
  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch {
    throw new Error("sender is not JSON");
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error("sender is not a JSON object");
  }
  const allowed = ["repository", "repository_id", "ref", "environment", "workflow_ref"];
  if (Object.keys(value).some((k) => !allowed.includes(k))) {
    throw new Error("sender has an unknown member");
  }
  const sender = senderOf(value);
  if (typeof sender === "string") throw new Error(`sender: ${sender.replace("claim ", "")}`);
  // Only the canonical form is accepted: what was signed is what is read.
  if (encodeSender(sender) !== text) throw new Error("sender is not in canonical form");
  return sender;
}

/** The log fields naming a verified sender (all public claims); none without one. */
export function senderFields(sender: Sender | undefined): Record<string, string> {
  if (!sender) return {};
  return {
    sender_repository: sender.repository,
    sender_repository_id: sender.repositoryId,
  };
}
