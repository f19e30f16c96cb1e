/**
 * Tells people, not only CI: when an event's outcome is final, one web replica
 * POSTs a notification to each NOTIFY_URLS target, once per event and URL
 * across replicas (web/notification_record.ts), also when the event became
 * final only by a cluster's silence and nobody is reading its status. A loop
 * polls the queue the publish script fills; it never runs in a request, so a
 * slow or hanging receiver never slows POST /event. Each tick is bounded in
 * events, and deliveries in flight are bounded in number and time.
 *
 * The state comes from the same read and fold as GET /event/<id>
 * (web/status_store.ts, web/status_summary.ts): with signed reports, only
 * what the clusters signed. The run's audit fields come from the record web
 * wrote at publishing.
 */

import type { Logger } from "../lib/log.ts";
import { sleep } from "../lib/backoff.ts";
import { describeError } from "../lib/error_text.ts";
import type { EventStatus, OverallState } from "../shared/event_status.ts";
import type { NotifyTarget } from "../config/notify_targets.ts";
import { deliverNotification, type DeliveryOptions } from "./notification_delivery.ts";
import {
  type NotificationAudit,
  notificationBody,
  type NotificationFormat,
} from "./notification_message.ts";
import { notificationHeaders } from "./notification_signature.ts";
import {
  type NotificationRecord,
  notifiedField,
  readAudit,
  targetId,
} from "./notification_record.ts";
import type { StatusReader } from "./status_store.ts";
import { summarizeStatus } from "./status_summary.ts";
import type { Counter } from "../lib/metrics.ts";

/** How often the queue is looked at. */
export const NOTIFY_POLL_MS = 1000;
/** How soon an event that is not final yet is looked at again. */
export const NOTIFY_RECHECK_MS = 2000;
/** Events taken per tick, and deliveries (events) in flight at once. */
const PER_TICK = 50;
const IN_FLIGHT = 16;

/** What the notifier needs. */
export interface NotifierOptions {
  targets: readonly NotifyTarget[];
  /** Final states sent (NOTIFY_STATES); the others are taken off the queue unsent. */
  states: readonly OverallState[];
  format: NotificationFormat;
  /** NOTIFY_SECRET: signs each delivery when set. */
  secret?: string;
  record: NotificationRecord;
  reader: StatusReader;
  reportTimeoutMs: number;
  logger: Logger;
  /** kuberollouttrigger_notifications_total{result}. */
  counter: Counter;
  /** Stops the loop; deliveries in flight stop and hand their events back. */
  signal: AbortSignal;
  now?: () => number;
  delivery?: Omit<DeliveryOptions, "signal">;
  /** Claim lease: longer than one event's deliveries can take (attempts × timeout + backoff). */
  leaseMs?: number;
  pollMs?: number;
}

/** A running notifier; `stopped` resolves once its loop and deliveries ended. */
export interface Notifier {
  stopped: Promise<void>;
}

/** Starts the loop. */
export function startNotifier(options: NotifierOptions): Notifier {
  const owner = crypto.randomUUID();
  const inFlight = new Map<string, Promise<void>>();
  const tick = async () => {
    const now = options.now?.() ?? Date.now();
    const ids = await options.record.due(now, PER_TICK);
    for (const id of ids) {
      if (options.signal.aborted || inFlight.size >= IN_FLIGHT) break;
      if (inFlight.has(id)) continue;
      const work = visit(options, owner, id).finally(() => inFlight.delete(id));
      inFlight.set(id, work);
    }
  };
  const loop = async () => {
    while (!options.signal.aborted) {
      await tick().catch((err) =>
        options.logger.warn("notification queue read failed; retrying", {
          error: describeError(err),
        })
      );
      await sleep(options.pollMs ?? NOTIFY_POLL_MS, options.signal);
    }
    await Promise.allSettled(inFlight.values());
  };
  return { stopped: loop() };
}

/** One due event: not final yet (later), final (claim and deliver), or gone (off the queue). */
async function visit(options: NotifierOptions, owner: string, id: string): Promise<void> {
  try {
    const found = await finalStatus(options, id);
    if (found === "gone") return await options.record.finish(id);
    if (found === "pending") {
      const now = options.now?.() ?? Date.now();
      return await options.record.later(id, now + NOTIFY_RECHECK_MS);
    }
    const lease = options.leaseMs ?? 120_000;
    if (!(await options.record.claim(id, owner, lease))) {
      // Another replica delivers; if it dies, its lease ends and this one goes on.
      const now = options.now?.() ?? Date.now();
      return await options.record.later(id, now + lease / 4);
    }
    await notify(options, owner, id, found);
  } catch (err) {
    options.logger.warn("notification failed; retrying", {
      event_id: id,
      error: describeError(err),
    });
  }
}

/** The event's status and audit fields when final; "pending" before; "gone" with no record. */
async function finalStatus(
  options: NotifierOptions,
  id: string,
): Promise<{ status: EventStatus; audit: NotificationAudit } | "pending" | "gone"> {
  const stored = await options.reader.read(id);
  if (!stored) return "gone";
  const status = summarizeStatus({
    id,
    binding: stored.binding,
    reports: stored.reports,
    unreadable: stored.unreadable,
    unreachable: stored.unreachable,
    now: options.now?.() ?? Date.now(),
    reportTimeoutMs: options.reportTimeoutMs,
  });
  if (!status.final) return "pending";
  return { status, audit: readAudit(stored.notify) };
}

/** Delivers to each target not done yet, marks each, then takes the event off the queue. */
async function notify(
  options: NotifierOptions,
  owner: string,
  id: string,
  found: { status: EventStatus; audit: NotificationAudit },
): Promise<void> {
  const { status, audit } = found;
  if (!options.states.includes(status.state)) {
    await options.record.finish(id);
    return;
  }
  const done = await options.record.done(id);
  const body = notificationBody(status, audit, options.format);
  const pending = options.targets.filter((t) => !done.has(notifiedField(t.url)));
  await Promise.all(pending.map((t) => deliverOne(options, id, t, body)));
  if (options.signal.aborted) {
    // Stopped mid-way: what was not marked is another replica's to send, at once.
    await options.record.release(id, owner);
    return;
  }
  await options.record.finish(id);
  await options.record.release(id, owner);
}

/** One URL: delivered or given up, marked and counted; a failure logged without the URL. */
async function deliverOne(
  options: NotifierOptions,
  id: string,
  target: NotifyTarget,
  body: string,
): Promise<void> {
  const now = options.now?.() ?? Date.now();
  const headers = notificationHeaders({
    eventId: id,
    deliveryId: `${id}.${targetId(target.url)}`,
    body,
    timestampSeconds: Math.floor(now / 1000),
    secret: options.secret,
  });
  const result = await deliverNotification(target.url, { body, headers }, {
    ...options.delivery,
    signal: options.signal,
  });
  if (!result.ok && result.reason === "stopped") return;
  await options.record.mark(id, target.url, result.ok ? "delivered" : "failed", now);
  options.counter.inc({ result: result.ok ? "delivered" : "failed" });
  const fields = { event_id: id, target: target.label, attempts: result.attempts };
  if (result.ok) {
    options.logger.info("notification delivered", { ...fields, status: result.status });
  } else options.logger.warn("notification not delivered", { ...fields, reason: result.reason });
}
