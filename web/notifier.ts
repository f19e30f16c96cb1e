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

import { EVENT_ID } from "../shared/event.ts";
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
import { nextTimedChange, summarizeStatus } from "./status_summary.ts";
import type { Counter, Gauge } from "../lib/metrics.ts";
import { repositoryHash } from "./request_steps.ts";

/** How often the queue is looked at. */
export const NOTIFY_POLL_MS = 1000;
/** Soonest an event that is not final yet is looked at again; older ones less often. */
export const NOTIFY_RECHECK_MS = 2000;
const RECHECK_MAX_MS = 60_000;
/** Events taken per tick, and events being looked at or delivered at once. */
const PER_TICK = 50;
const IN_FLIGHT = 64;
/** While the queue holds more than a tick takes: the next tick comes this soon. */
const BUSY_POLL_MS = 50;
/** Clock skew allowed between replicas when judging a record older than STATUS_TTL. */
const SKEW_MS = 60_000;

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
  /** STATUS_TTL: a queued event older than this has no record left; it is dropped, counted. */
  statusTtlMs: number;
  logger: Logger;
  /** kuberollouttrigger_notifications_total{result}. */
  counter: Counter;
  /** kuberollouttrigger_notifications_queued: events waiting to be final and notified. */
  queued?: Gauge;
  /** Stops the loop; deliveries in flight stop and hand their events back. */
  signal: AbortSignal;
  now?: () => number;
  delivery?: Omit<DeliveryOptions, "signal">;
  /** Claim lease; default: twice the longest an event's deliveries can take. */
  leaseMs?: number;
  pollMs?: number;
}

/** A running notifier; `stopped` resolves once its loop and deliveries ended. */
export interface Notifier {
  stopped: Promise<void>;
}

/** Twice the longest one event's deliveries can take (they run in parallel per URL). */
export function leaseFor(delivery: NotifierOptions["delivery"]): number {
  const attempts = Math.min(10, Math.max(1, delivery?.attempts ?? 3));
  const timeout = Math.min(120_000, Math.max(1, delivery?.timeoutMs ?? 5000));
  let backoff = 0;
  for (let retry = 1; retry < attempts; retry++) {
    backoff += Math.min(60_000, Math.max(0, delivery?.backoffMs?.(retry) ?? 10_000));
  }
  return Math.max(120_000, 2 * (attempts * timeout + backoff));
}

/** Starts the loop. */
export function startNotifier(options: NotifierOptions): Notifier {
  const run: Run = {
    options,
    owner: crypto.randomUUID(),
    lease: options.leaseMs ?? leaseFor(options.delivery),
    now: options.now ?? Date.now,
  };
  const inFlight = new Map<string, Promise<void>>();
  const loop = async () => {
    while (!options.signal.aborted) {
      const busy = await tick(run, inFlight).catch((err) => {
        options.logger.warn("notification queue read failed; retrying", {
          error: describeError(err),
        });
        return false;
      });
      await sleep(busy ? BUSY_POLL_MS : options.pollMs ?? NOTIFY_POLL_MS, options.signal);
    }
    await Promise.allSettled(inFlight.values());
  };
  return { stopped: loop() };
}

/** What every step of one notifier shares. */
interface Run {
  options: NotifierOptions;
  /** This replica's claims. */
  owner: string;
  lease: number;
  now: () => number;
}

/** One look at the queue; true when it held more than could be taken now. */
async function tick(run: Run, inFlight: Map<string, Promise<void>>): Promise<boolean> {
  const { options } = run;
  const now = run.now();
  await dropExpired(run, now);
  const ids = await options.record.due(now, PER_TICK);
  for (const id of ids) {
    if (options.signal.aborted || inFlight.size >= IN_FLIGHT) return true;
    if (inFlight.has(id)) continue;
    inFlight.set(id, visit(run, id).finally(() => inFlight.delete(id)));
  }
  options.queued?.set(await options.record.size());
  return ids.length === PER_TICK;
}

/**
 * Entries due longer ago than STATUS_TTL (their records are gone: every score
 * is at least the publish time), and entries that are no event id (only
 * someone writing to Valkey makes those): removed in bounded batches, the
 * events among them counted and logged as never notified.
 */
async function dropExpired(run: Run, now: number): Promise<void> {
  const stale = await run.options.record.due(now - run.options.statusTtlMs - SKEW_MS, 1000);
  for (const id of stale) {
    await run.options.record.finish(id);
    if (EVENT_ID.test(id)) expired(run, id, "queued longer than STATUS_TTL");
  }
}

/** Counts and logs an event that will never be notified. */
function expired(run: Run, id: string, why: string): void {
  run.options.counter.inc({ result: "expired" });
  run.options.logger.warn("notification dropped: the event's status record is gone", {
    event_id: id,
    reason: why,
  });
}

/** One due event: not final yet (later), final (claim and deliver), or gone (off the queue). */
async function visit(run: Run, id: string): Promise<void> {
  const { options } = run;
  try {
    if (!EVENT_ID.test(id)) return await options.record.finish(id);
    const found = await finalStatus(run, id);
    if ("gone" in found) {
      expired(run, id, found.gone);
      return await options.record.finish(id);
    }
    if ("recheckAt" in found) return await options.record.later(id, found.recheckAt);
    if (!(await options.record.claim(id, run.owner, run.lease))) {
      // Another replica delivers; it hands the event back at once when stopped, or its lease ends.
      return await options.record.later(id, run.now() + run.lease / 4);
    }
    await notify(run, id, found);
  } catch (err) {
    options.logger.warn("notification failed; retrying", {
      event_id: id,
      error: describeError(err),
    });
  }
}

type Found =
  | { status: EventStatus; audit: NotificationAudit }
  | { recheckAt: number }
  | { gone: string };

/** The event's status and audit fields when final; when to look again; or why it is gone. */
async function finalStatus(run: Run, id: string): Promise<Found> {
  const { options } = run;
  const stored = await options.reader.read(id);
  if (!stored) return { gone: "no readable status record (expired, or not web's)" };
  const now = run.now();
  const published = Date.parse(stored.binding.time);
  // A record older than its TTL was written back by someone: never notified again.
  if (!(now - published <= options.statusTtlMs + SKEW_MS)) return { gone: "older than STATUS_TTL" };
  const status = summarizeStatus({
    id,
    binding: stored.binding,
    reports: stored.reports,
    unreadable: stored.unreadable,
    unreachable: stored.unreachable,
    now,
    reportTimeoutMs: options.reportTimeoutMs,
  });
  if (!status.final) return { recheckAt: recheckAt(status, now, published, options) };
  return { status, audit: checkedAudit(run, id, stored.notify, stored.binding.repository) };
}

/**
 * When to look at an event that is not final: soon while it is young, less
 * often as it ages (a long rollout), and right after a cluster's report
 * timeout, when it may become final with no report arriving.
 */
function recheckAt(
  status: EventStatus,
  now: number,
  published: number,
  options: NotifierOptions,
): number {
  const age = Math.max(0, now - published);
  const backoff = Math.min(RECHECK_MAX_MS, Math.max(NOTIFY_RECHECK_MS, age / 4));
  const timed = nextTimedChange(status, options.reportTimeoutMs);
  return timed !== undefined && timed > now ? Math.min(now + backoff, timed + 100) : now + backoff;
}

/**
 * The run's audit fields as web stored them, when they belong to the event:
 * their repository_id must hash to the (signed) binding's repository, or
 * they were written by someone else and are left out.
 */
function checkedAudit(
  run: Run,
  id: string,
  raw: string | undefined,
  repository: string,
): NotificationAudit {
  const audit = readAudit(raw);
  if (audit.repositoryId !== "" && repositoryHash(audit.repositoryId) === repository) return audit;
  if (raw !== undefined) {
    run.options.logger.warn("notification audit fields do not match the event; sent without them", {
      event_id: id,
    });
  }
  return { repository: "", repositoryId: "" };
}

/** Delivers to each target not done yet, marks each, then takes the event off the queue. */
async function notify(
  run: Run,
  id: string,
  found: { status: EventStatus; audit: NotificationAudit },
): Promise<void> {
  const { options } = run;
  const { status, audit } = found;
  try {
    if (!options.states.includes(status.state)) return await options.record.finish(id);
    const done = await options.record.done(id);
    const body = notificationBody(status, audit, options.format);
    const pending = options.targets.filter((t) => !done.has(notifiedField(t.url)));
    const results = await Promise.allSettled(pending.map((t) => deliverOne(run, id, t, body)));
    // Stopped mid-way, or Valkey failed a mark: what is not marked is sent by whoever goes on.
    if (options.signal.aborted || results.some((r) => r.status === "rejected")) return;
    await options.record.finish(id);
  } finally {
    // Also puts a queued event back to due now, so another replica goes on at once.
    await options.record.release(id, run.owner, run.now()).catch(() => {});
  }
}

/** One URL: delivered or given up, counted and logged, then marked; never logs the URL. */
async function deliverOne(run: Run, id: string, target: NotifyTarget, body: string): Promise<void> {
  const { options } = run;
  const now = run.now();
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
  options.counter.inc({ result: result.ok ? "delivered" : "failed" });
  const fields = { event_id: id, target: target.label, attempts: result.attempts };
  if (result.ok) {
    options.logger.info("notification delivered", { ...fields, status: result.status });
  } else options.logger.warn("notification not delivered", { ...fields, reason: result.reason });
  await options.record.mark(id, target.url, result.ok ? "delivered" : "failed", now);
}
