/**
 * The image event: the body a workflow POSTs, and the message web publishes and
 * the worker consumes. Both sides validate with these functions, so anyone who
 * can publish to Valkey is held to the same schema and prefix rules as an
 * authenticated HTTP caller. All input here is untrusted.
 */

import { AppError } from "./errors.ts";
import type { Sender } from "./event_sender.ts";
import { isAllowedRepository, isValidTag, parseImageRef } from "./image_ref.ts";
import { type JsonValue, parseStrictJson } from "../lib/strict_json.ts";

/** Most tags one event may name. */
export const MAX_TAGS = 32;

/** A validated event: a normalised repository and the tags just pushed to it. */
export interface ImageEvent {
  /** Normalised repository, e.g. `ghcr.io/acme/app`. */
  image: string;
  /** One or more tags, without duplicates, in the order given. */
  tags: string[];
}

/** What travels on the channel: the event plus server-made metadata only. */
export interface EventMessage extends ImageEvent {
  /** Event id made by web (UUID). */
  id: string;
  /** When web accepted the event (RFC 3339). */
  time: string;
  /**
   * Who sent it, only when web's signature over it verified (it travels
   * beside the event JSON in the signed envelope, never inside it).
   */
  sender?: Sender;
}

/** An event id as web makes them (a UUID, lower-case hex): what every keyed lookup checks first. */
export const EVENT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

function invalid(message: string): AppError {
  return new AppError("ERR_EVENT_INVALID", message);
}

function readObject(text: string, allowed: readonly string[]): Record<string, JsonValue> {
  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch (err) {
    throw invalid(`body is not valid JSON: ${(err as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw invalid("body must be a JSON object");
  }
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) throw invalid(`unknown field "${key.slice(0, 40)}"`);
  }
  return value;
}

function readTags(value: JsonValue): string[] {
  if (!Array.isArray(value)) throw invalid('"tags" must be an array of strings');
  if (value.length === 0) throw invalid('"tags" must not be empty');
  if (value.length > MAX_TAGS) throw invalid(`"tags" may hold at most ${MAX_TAGS} tags`);
  const tags: string[] = [];
  for (const tag of value) {
    if (typeof tag !== "string") throw invalid('"tags" must be an array of strings');
    if (!isValidTag(tag)) throw invalid(`tag "${tag.slice(0, 130)}" is not a valid tag`);
    if (!tags.includes(tag)) tags.push(tag);
  }
  return tags;
}

/**
 * Validates an image and optional tag list, then checks the repository against
 * the allowed prefixes. Accepts `image` with one tag, or `image` without a tag
 * plus `tags`. Digests are rejected: a digest names content, not a push.
 */
export function validateEvent(
  image: JsonValue | undefined,
  tags: JsonValue | undefined,
  prefixes: readonly string[],
): ImageEvent {
  if (typeof image !== "string") throw invalid('"image" must be a string');
  let ref;
  try {
    ref = parseImageRef(image);
  } catch (err) {
    throw invalid(`image is not a valid reference: ${(err as Error).message}`);
  }
  if (ref.digest !== undefined) throw invalid("image must name a tag, not a digest");
  let eventTags: string[];
  if (tags === undefined) {
    if (ref.tag === undefined) throw invalid('image has no tag: use "repo:tag" or add "tags"');
    eventTags = [ref.tag];
  } else {
    if (ref.tag !== undefined) throw invalid('give the tag in "image" or in "tags", not both');
    eventTags = readTags(tags);
  }
  if (!isAllowedRepository(ref.repository, prefixes)) {
    throw new AppError(
      "ERR_IMAGE_NOT_ALLOWED",
      `image ${ref.repository} is not under an allowed prefix`,
    );
  }
  return { image: ref.repository, tags: eventTags };
}

/** Parses a POST /event body: `{"image":"repo:tag"}` or `{"image":"repo","tags":[…]}`. */
export function parseEventRequest(text: string, prefixes: readonly string[]): ImageEvent {
  const body = readObject(text, ["image", "tags"]);
  return validateEvent(body.image, body.tags, prefixes);
}

/** Serialises a message for the channel; the field order is fixed. */
export function encodeEventMessage(message: EventMessage): string {
  const { id, time, image, tags } = message;
  return JSON.stringify({ id, time, image, tags });
}

/** Parses and re-validates a channel message with web's rules. */
export function parseEventMessage(text: string, prefixes: readonly string[]): EventMessage {
  const body = readObject(text, ["id", "time", "image", "tags"]);
  if (typeof body.id !== "string" || !EVENT_ID.test(body.id)) throw invalid('"id" must be a UUID');
  if (
    typeof body.time !== "string" || !RFC3339.test(body.time) || Number.isNaN(Date.parse(body.time))
  ) {
    throw invalid('"time" must be an RFC 3339 time');
  }
  if (body.tags === undefined) throw invalid('"tags" is required');
  const event = validateEvent(body.image, body.tags, prefixes);
  if (event.image !== body.image) throw invalid('"image" must be a normalised repository');
  return { id: body.id, time: body.time, ...event };
}
