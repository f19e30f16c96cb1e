/**
 * POST /event as a chain of named steps: authenticate (shared with the status
 * route) → content type and coding → bounded body → event → the sender's
 * grant (REPOSITORY_RULES) → replay guard → sign with the sender (when web
 * has a key) → publish with the status binding → 202. The
 * token is verified before the body is read; the body is untrusted until
 * parseEventRequest accepts it.
 */

import { AppError } from "../shared/errors.ts";
import { AuthError, Reason } from "./reasons.ts";
import { encodeSender, type Sender, senderOf } from "../shared/event_sender.ts";
import type { RepositoryRules } from "../config/repository_rules.ts";
import { auditOf } from "./notification_record.ts";
import { encodeEventMessage, type EventMessage, parseEventRequest } from "../shared/event.ts";
import type { EventSigner } from "./event_signer.ts";
import type { StatusBinding } from "../shared/event_status.ts";
import type { LogFields } from "../lib/log.ts";
import { json } from "../lib/json_response.ts";
import type { WebMetrics } from "./metrics.ts";
import type { GitHubClaims } from "./oidc.ts";
import type { AnswerTemplate, Publisher } from "./publisher.ts";
import type { ReplayGuard } from "./replay.ts";
import {
  type BodyReader,
  codingProblem,
  isJsonContentType,
  MAX_BODY_BYTES,
} from "./request_body.ts";
import { type Authenticate, repositoryBinding } from "./request_steps.ts";
import type { Route } from "./route.ts";

/** What the POST route uses. */
export interface EventRouteDeps {
  authenticate: Authenticate;
  publisher: Publisher;
  replay: ReplayGuard;
  prefixes: readonly string[];
  /** Reads the body within its size and time bounds. */
  bodies: BodyReader;
  metrics: WebMetrics;
  now: () => Date;
  newId: () => string;
  /** Signs each message and binding; without it both go out unsigned. */
  signer?: EventSigner;
  /** REPOSITORY_RULES: which repository may name which images (none: any allowed image). */
  rules?: RepositoryRules;
  /** NOTIFY_URLS is set: each event keeps its run's audit fields and is queued to be notified. */
  notifying?: boolean;
  /**
   * With signed reports: the clusters every event waits for (the publisher's
   * explicit list), signed into the binding so Valkey write access cannot drop one.
   */
  signedClusters?: readonly string[];
}

/** The exact bytes to publish and the binding to store, signed when web has a key. */
async function signedOutput(
  deps: Pick<EventRouteDeps, "signer" | "signedClusters">,
  message: EventMessage,
  repository: string,
  sender: Sender | undefined,
): Promise<
  { message: string; senderField?: string; binding: Omit<StatusBinding, "clusters"> }
> {
  const { signer, signedClusters } = deps;
  const encoded = encodeEventMessage(message);
  const binding = { repository, image: message.image, tags: message.tags, time: message.time };
  if (!signer) return { message: encoded, binding };
  // One signature serves both: the binding's fields rebuild the signed event bytes.
  const { message: signed, kid, sig, senderField } = await signer.signEvent(
    encoded,
    repository,
    sender && encodeSender(sender),
  );
  const out = { message: signed, ...(senderField ? { senderField } : {}) };
  if (!signedClusters) return { ...out, binding: { ...binding, kid, sig } };
  const csig = signer.signClusters(message.id, signedClusters);
  return { ...out, binding: { ...binding, kid, sig, csig } };
}

/** The 202 body: the fields existing clients read, then those of SPEC §12; the script fills the middle. */
function acceptedAnswer(path: string, id: string): AnswerTemplate {
  return {
    head: `{"id":${JSON.stringify(id)}`,
    tail: `,"status":${JSON.stringify(`${path}/${id}`)}}`,
  };
}

/** Reads the event from the body; a Response when the request is refused before parsing. */
async function readEventBody(
  req: Request,
  log: LogFields,
  bodies: BodyReader,
): Promise<string | Response> {
  if (!isJsonContentType(req.headers.get("content-type"))) {
    return json(415, { error: "content type must be application/json" });
  }
  const coding = codingProblem(req);
  if (coding) return json(415, { error: coding });
  const body = await bodies.read(req);
  if (body === "too_large") return json(413, { error: `body exceeds ${MAX_BODY_BYTES} bytes` });
  if (body === "too_slow") return json(408, { error: "request body was not received in time" });
  if (body === "cut_short") {
    log.reason = Reason.body_incomplete;
    return json(400, { error: "request body ended before it was complete" });
  }
  if (body === "bad_encoding") throw new AppError("ERR_EVENT_INVALID", "body is not valid UTF-8");
  return body;
}

/**
 * Who sent the event, once REPOSITORY_RULES give that sender the image; an
 * AuthError (the same 403 as every denial) otherwise. Claims that cannot name
 * a sender (GitHub's always can) are refused only where a sender is needed:
 * with rules, or to sign it into the event.
 */
function grantedSender(
  claims: GitHubClaims,
  image: string,
  deps: Pick<EventRouteDeps, "rules" | "signer">,
): Sender | undefined {
  const sender = senderOf(claims);
  const rules = deps.rules?.size ? deps.rules : undefined;
  if (typeof sender === "string") {
    if (!rules && !deps.signer) return undefined;
    throw new AuthError(Reason.sender_unnamed, sender);
  }
  const refused = rules?.check(sender, image);
  if (refused !== undefined) throw new AuthError(Reason.image_not_granted, refused);
  return sender;
}

/** Creates the POST /event route for the path it is mounted on. */
export function createEventRoute(deps: EventRouteDeps, path: string): Route {
  const publish = async (
    claims: GitHubClaims,
    repository: string,
    body: string,
    log: LogFields,
  ) => {
    const event = parseEventRequest(body, deps.prefixes);
    const sender = grantedSender(claims, event.image, deps);
    const claim = deps.replay.claim({
      issuer: String(claims.iss),
      jti: claims.jti,
      exp: claims.exp,
      iat: claims.iat,
      body,
    });
    // One script call claims the token, publishes and stores the answer (web/publisher.ts).
    const outcome = await deps.replay.once(claim, async () => {
      const message: EventMessage = { id: deps.newId(), time: deps.now().toISOString(), ...event };
      Object.assign(log, { event_id: message.id, image: event.image, tags: event.tags });
      const published = await deps.publisher.publish({
        eventId: message.id,
        ...(await signedOutput(deps, message, repository, sender)),
        replay: { claim, answer: acceptedAnswer(path, message.id) },
        ...(deps.notifying ? { notify: JSON.stringify(auditOf(claims)) } : {}),
      });
      if (published.taken !== undefined) {
        delete log.event_id; // not published: the first use's event is the one that counts
        return { kind: "taken", record: published.taken };
      }
      const { subscribers, clusters, unreachable, answer } = published;
      Object.assign(log, { subscribers, clusters, unreachable });
      if (clusters.length === 0) {
        // Nothing was written: a retry with the same token may try again.
        deps.metrics.publishFailures.inc({ reason: "no_subscriber" });
        throw new AppError("ERR_NO_SUBSCRIBER", "no worker cluster is known to Valkey");
      }
      deps.metrics.published.inc();
      if (answer === undefined) {
        throw new AppError("ERR_PUBLISH_FAILED", "Valkey stored no answer for the event");
      }
      return { kind: "done", value: answer };
    });
    if (outcome.kind === "repeat") {
      // A client retry: the same answer again, and nothing published twice.
      log.replayed = true;
      deps.metrics.tokenReuse.inc({ outcome: "repeat" });
      return json(outcome.status, outcome.body);
    }
    return json(202, outcome.value);
  };

  return async (req, _info, log) => {
    const claims = await deps.authenticate(req, log);
    // Checked before the body is read: without a binding nobody could read the status.
    const repository = repositoryBinding(claims);
    const body = await readEventBody(req, log, deps.bodies);
    if (body instanceof Response) return body;
    return await publish(claims, repository, body, log);
  };
}
