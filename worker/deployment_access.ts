/**
 * The cluster owner's say per Deployment: the annotation
 * `kuberollouttrigger/allowed-repositories` names the repositories whose
 * events may restart it. Pure: the inventory parses the annotation once when
 * it stores a Deployment; the worker decides per Deployment per event.
 * Trusts the sender (the caller passes one only from a verified signature).
 * Does not trust the annotation's text: its length is bounded before it is
 * read, entries are parsed strictly, and it is quoted only escaped and cut.
 * Fails closed: an annotation that does not parse lets no repository in.
 */

import { asciiLowerCase, isGitHubName } from "../lib/setting_values.ts";
import type { Sender } from "../shared/event_sender.ts";

/** Annotation on a Deployment's metadata naming the repositories allowed to restart it. */
export const ALLOWED_REPOSITORIES_ANNOTATION = "kuberollouttrigger/allowed-repositories";
/** Longest annotation value read (Kubernetes allows 256 KiB for all annotations together). */
export const MAX_ACCESS_LIST_LENGTH = 4096;
/** Most entries one annotation may hold (`owner/*` names many repositories at once). */
export const MAX_ACCESS_ENTRIES = 100;

/** What a Deployment's annotation says, compact (the inventory keeps one per Deployment; most have none). */
export type AccessList =
  | undefined
  | { entries: readonly AccessEntry[] }
  | { invalid: string };

/** One entry: a repository (lower-cased owner/name), every repository of an owner, or a repository id. */
export type AccessEntry = { repository: string } | { owner: string } | { repositoryId: string };

/** Whether one event's sender may restart one Deployment. */
export type AccessDecision = "allowed" | "not_allowed" | "not_opted_in";

// ASCII whitespace and commas only: a Unicode space inside an entry makes it
// invalid instead of silently splitting it into two.
const SEPARATORS = /[\t\n\v\f\r ,]+/;
// Compared as strings, as the sender carries it: `id:0123` is not `id:123`.
const REPOSITORY_ID = /^id:([0-9]{1,20})$/;
const QUOTE_LENGTH = 100;

/** Parses the annotation value (untrusted: may be up to 256 KiB; longer than 4096 chars is invalid without scanning it all). */
export function parseAccessList(value: unknown): AccessList {
  if (value === undefined) return undefined;
  if (typeof value !== "string") return { invalid: "value is not a string" };
  // Security: the length is checked before any scan, so a huge value costs nothing.
  if (value.length > MAX_ACCESS_LIST_LENGTH) {
    return {
      invalid: `value is ${value.length} characters long; at most ${MAX_ACCESS_LIST_LENGTH}`,
    };
  }
  const texts = value.split(SEPARATORS).filter((text) => text !== "");
  if (texts.length === 0) {
    return { invalid: "value is empty; name owner/name, owner/* or id:<digits>" };
  }
  if (texts.length > MAX_ACCESS_ENTRIES) {
    return {
      invalid:
        `value has ${texts.length} entries; at most ${MAX_ACCESS_ENTRIES} (owner/* names many)`,
    };
  }
  const entries: AccessEntry[] = [];
  for (const text of texts) {
    const entry = parseEntry(text);
    // Security: one bad entry invalidates all; a typo must not quietly narrow or widen the list.
    if (typeof entry === "string") return { invalid: entry };
    entries.push(entry);
  }
  return { entries };
}

/** One entry, lower-cased where GitHub compares case-insensitively, or why it is not one. */
function parseEntry(text: string): AccessEntry | string {
  const id = REPOSITORY_ID.exec(text);
  if (id) return { repositoryId: id[1] };
  if (text.startsWith("id:")) return `entry ${quote(text)} is not id: with 1-20 digits`;
  const [owner, name, ...rest] = text.split("/");
  if (name !== undefined && rest.length === 0 && isGitHubName(owner)) {
    // Security: ASCII-only lower-casing, so no non-ASCII letter folds into a name.
    if (name === "*") return { owner: asciiLowerCase(owner) };
    if (isGitHubName(name)) return { repository: asciiLowerCase(text) };
  }
  return `entry ${quote(text)} is not owner/name, owner/* or id:<digits>`;
}

// Security: quoted as JSON with every non-ASCII character escaped, so a log
// line shows a look-alike (Cyrillic а as \u0430) or a control character for
// what it is; cut, so a long value cannot flood it.
function quote(text: string): string {
  return JSON.stringify(text.slice(0, QUOTE_LENGTH)).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** The decision for one Deployment and one event's sender (undefined: the event was not signed, so its sender is unknown). */
export function decideAccess(
  list: AccessList,
  sender: Sender | undefined,
  requireOptIn: boolean,
): AccessDecision {
  if (list === undefined) return requireOptIn ? "not_opted_in" : "allowed";
  // Security: fail closed: a broken annotation or an unknown sender lets nobody in.
  if ("invalid" in list || sender === undefined) return "not_allowed";
  const owner = ownerOf(sender.repository);
  return list.entries.some((entry) => matches(entry, sender, owner)) ? "allowed" : "not_allowed";
}

// The sender's repository is lower-cased owner/name (shared/event_sender.ts);
// without a slash its owner is "", which no entry holds.
function ownerOf(repository: string): string {
  const slash = repository.indexOf("/");
  return slash < 0 ? "" : repository.slice(0, slash);
}

function matches(entry: AccessEntry, sender: Sender, owner: string): boolean {
  if ("repositoryId" in entry) return entry.repositoryId === sender.repositoryId;
  // Whole-owner equality: `acme/*` must not match `acme-evil/app`.
  if ("owner" in entry) return entry.owner === owner;
  return entry.repository === sender.repository;
}

/** A one-line log detail for a decision that is not allowed (which repository was refused, or the annotation's problem; never secret). */
export function accessDetail(
  list: AccessList,
  sender: Sender | undefined,
  requireOptIn: boolean,
): string {
  const annotation = ALLOWED_REPOSITORIES_ANNOTATION;
  if (list === undefined) {
    return `the Deployment has no ${annotation} annotation and opt-in is ${
      requireOptIn ? "required" : "not required"
    }`;
  }
  if ("invalid" in list) {
    return `${annotation} is invalid, so no repository may restart it: ${list.invalid}`;
  }
  if (sender === undefined) {
    return `the event is unsigned, so its repository cannot be checked against ${annotation}`;
  }
  // Public claims only (shared/event_sender.ts): owner/name and the numeric id.
  const who = `repository ${sender.repository} (id ${sender.repositoryId})`;
  const allowed = decideAccess(list, sender, requireOptIn) === "allowed";
  return `${who} is ${allowed ? "" : "not "}listed in ${annotation}`;
}
