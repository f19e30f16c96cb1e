/**
 * Reading an event's status record from Valkey (one HGETALL) as named steps:
 * the fields → web's binding, checked against web's keys (when web signs) →
 * each cluster's report, checked against that cluster's keys (when reports
 * are signed) → the unreachable list. Anyone with the Valkey password can
 * write the record: a binding web did not sign, or a record of the wrong type,
 * is no record (404); a report its cluster did not sign is ignored, logged
 * once and counted. Requests that wait on a record are web/status_waiters.ts'.
 */

import { AppError } from "../shared/errors.ts";
import { describeError } from "../lib/error_text.ts";
import {
  BINDING_FIELD,
  type ClusterReport,
  parseBinding,
  parseClusterReport,
  parseUnreachable,
  type StatusBinding,
  statusKey,
  UNREACHABLE_FIELD,
} from "../shared/event_status.ts";
import { type VerifyKeys } from "../shared/event_signature.ts";
import { openReport } from "../shared/report_signature.ts";
import { verifyBinding, verifyClusterList } from "./event_signer.ts";
import type { Logger } from "../lib/log.ts";
import type { ReportRejection, ReportVerifier } from "./report_verifier.ts";
import { createVerifiedMemo, type VerifiedMemo } from "../lib/verified_memo.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import { NOTIFY_FIELD } from "./notification_record.ts";

/** A record as read: web's binding and each cluster's report (unreadable ones named). */
export interface StoredStatus {
  binding: StatusBinding;
  reports: Map<string, ClusterReport>;
  /** Clusters whose report field could not be read as a report. */
  unreadable: string[];
  /** Known clusters that were not live when web published. */
  unreachable: string[];
  /** With notifications: the run's audit fields web kept (JSON, untrusted). */
  notify?: string;
}

/** Reads status records. */
export interface StatusReader {
  /**
   * The record, or undefined when there is none (unknown, expired, not a
   * hash) or its binding is unreadable or, with binding keys, not signed by
   * one of them.
   */
  read(id: string): Promise<StoredStatus | undefined>;
}

/** Signed reports: the clusters' keys, and what to do with a report that is ignored. */
export interface ReportChecks {
  verifier: ReportVerifier;
  /** The clusters every event waits for (CLUSTERS, else those with keys). */
  clusters: readonly string[];
  /** Called for every ignored report field (a metric); the log line is written once per field. */
  rejected?(reason: ReportRejection): void;
}

/** HGETALL's flat [field, value, ...] reply as a record without a prototype. */
function fieldsOf(reply: unknown): Record<string, string> {
  if (!Array.isArray(reply) || reply.length % 2 !== 0) {
    throw new Error("Valkey answered HGETALL with something other than field-value pairs");
  }
  const fields: Record<string, string> = Object.create(null);
  for (let i = 0; i < reply.length; i += 2) fields[String(reply[i])] = String(reply[i + 1]);
  return fields;
}

const REPORT_FIELD = /^cluster:([A-Za-z0-9._-]{1,63})$/;
/** Ignored report fields remembered so each is logged once (bounded; the oldest are forgotten). */
const LOGGED_REJECTIONS = 10_000;
/** Verified bindings and reports remembered, so a record read again is not verified again. */
const VERIFIED_MEMO = 10_000;

/** The reader's parts, handed to each step below. */
interface Parts {
  client: ValkeyCommands;
  logger: Logger;
  bindingKeys?: VerifyKeys;
  reportChecks?: ReportChecks;
  /** What was logged already (`<id> <cluster> <reason>` of rejections, `<id> clusters`). */
  logged: Set<string>;
  /** Signature checks already passed by exactly these inputs (lib/verified_memo.ts). */
  memo: VerifiedMemo;
}

/**
 * Creates the reader on web's command connection. With `bindingKeys` (web's
 * own key and EVENT_VERIFY_KEYS) a binding whose signature does not verify
 * is treated as no record: anyone who can write Valkey could have written it.
 * With `reportChecks` the binding's cluster list must be web's too (`csig`),
 * and only reports their cluster signed are read.
 */
export function createStatusReader(
  client: ValkeyCommands,
  logger: Logger,
  bindingKeys?: VerifyKeys,
  reportChecks?: ReportChecks,
): StatusReader {
  const parts: Parts = {
    client,
    logger,
    bindingKeys,
    reportChecks,
    logged: new Set(),
    memo: createVerifiedMemo(VERIFIED_MEMO),
  };
  return {
    async read(id) {
      const fields = await readFields(parts, id);
      const binding = fields && await readBinding(parts, id, fields);
      if (!fields || !binding) return undefined;
      const { reports, unreadable } = await readReports(parts, id, fields, binding);
      const unreachable = readUnreachable(fields, id, logger);
      return { binding, reports, unreadable, unreachable, notify: fields[NOTIFY_FIELD] };
    },
  };
}

/** The record's fields; undefined when the key holds something other than a hash. */
async function readFields(p: Parts, id: string): Promise<Record<string, string> | undefined> {
  try {
    return fieldsOf(await p.client.call("HGETALL", statusKey(id)));
  } catch (err) {
    // Not ours: someone wrote another type under the key. It can never become a record.
    if (err instanceof Error && err.message.startsWith("WRONGTYPE")) {
      p.logger.warn("status record is not a hash; answering not found", { event_id: id });
      return undefined;
    }
    throw new AppError("ERR_PUBLISH_FAILED", `status read failed: ${describeValkeyError(err)}`, {
      cause: err,
    });
  }
}

/** Web's binding, when it is readable and (with keys) web's own. */
async function readBinding(
  p: Parts,
  id: string,
  fields: Record<string, string>,
): Promise<StatusBinding | undefined> {
  const raw = fields[BINDING_FIELD];
  if (raw === undefined) return undefined;
  let binding: StatusBinding;
  try {
    binding = parseBinding(raw);
  } catch (err) {
    // Security: not written by web (or damaged); nobody can be shown to own it.
    p.logger.warn("status binding unreadable; answering not found", {
      event_id: id,
      error: describeError(err),
    });
    return undefined;
  }
  const notWebs = (reason: string) => {
    p.logger.warn("status binding not signed by web; answering not found", {
      event_id: id,
      reason,
    });
    return undefined;
  };
  const keys = p.bindingKeys;
  if (
    keys && !(await p.memo.verified(["binding", id, raw], () => verifyBinding(keys, id, binding)))
  ) {
    return notWebs(binding.sig === undefined ? "unsigned" : "bad_signature");
  }
  // With signed reports the clusters an event waits for must be web's list, or removing a
  // name from it would make a green answer of the other clusters' reports. A list web did not
  // sign (an older replica wrote it, or someone cut it) waits for every configured cluster too.
  if (!p.reportChecks) return binding;
  const listSigned = keys !== undefined &&
    await p.memo.verified(["clusters", id, raw], () => verifyClusterList(keys, id, binding));
  if (!listSigned) {
    if (firstTime(p, `${id} clusters`)) {
      p.logger.warn("status binding's cluster list not signed by web; waiting for every cluster", {
        event_id: id,
        reason: binding.csig === undefined ? "unsigned_clusters" : "bad_cluster_signature",
      });
    }
    binding.clusters = [...new Set([...binding.clusters, ...p.reportChecks.clusters])].sort();
  }
  return binding;
}

/** Each cluster's report that counts; unreadable ones named, ignored ones left out. */
async function readReports(
  p: Parts,
  id: string,
  fields: Record<string, string>,
  binding: StatusBinding,
): Promise<{ reports: Map<string, ClusterReport>; unreadable: string[] }> {
  const reports = new Map<string, ClusterReport>();
  const unreadable: string[] = [];
  // With signed reports only the clusters the event waits for count; any other field is
  // ignored unread (however many there are), counted each and logged once per event.
  const expected = p.reportChecks && new Set(binding.clusters);
  for (const [field, value] of Object.entries(fields)) {
    const cluster = REPORT_FIELD.exec(field)?.[1];
    if (!cluster) continue;
    if (expected && !expected.has(cluster)) {
      rejected(p, id, "any the event does not wait for", "not_waited_for");
      continue;
    }
    try {
      const json = await reportJson(p, id, cluster, value);
      if (json === undefined) continue;
      const report = parseClusterReport(json);
      if (report.cluster !== cluster) throw new Error("names another cluster");
      reports.set(cluster, report);
    } catch (err) {
      unreadable.push(cluster);
      p.logger.warn("cluster report unreadable", {
        event_id: id,
        cluster,
        error: describeError(err),
      });
    }
  }
  return { reports, unreadable };
}

/**
 * The report inside a field: without report keys, signed or not; with them,
 * only what its cluster signed (undefined: ignored, as if not written).
 */
async function reportJson(
  p: Parts,
  id: string,
  cluster: string,
  value: string,
): Promise<string | undefined> {
  if (!p.reportChecks) return openReport(value).report;
  const { verifier } = p.reportChecks;
  let rejection: ReportRejection = "unsigned";
  try {
    // A report read again (every wait slice) is opened, not verified again.
    const ok = await p.memo.verified(["report", id, cluster, value], async () => {
      const checked = await verifier.check(id, cluster, value);
      if ("rejected" in checked) rejection = checked.rejected;
      return "report" in checked;
    });
    if (ok) return openReport(value).report;
  } catch {
    rejection = "unsigned"; // a malformed envelope
  }
  rejected(p, id, cluster, rejection);
  return undefined;
}

/**
 * Counts and logs an ignored report field the first time this replica meets
 * it, so reading a record again (every wait slice) neither floods the log nor
 * drives the metric's alert.
 */
function rejected(p: Parts, id: string, cluster: string, reason: ReportRejection): void {
  if (!firstTime(p, `${id} ${cluster} ${reason}`)) return;
  p.reportChecks?.rejected?.(reason);
  p.logger.warn("cluster report ignored", {
    event_id: id,
    // Only a name the event waits for is shown; others may be anything anyone wrote.
    cluster,
    reason,
  });
}

/** True the first time `key` is seen (bounded memory: the oldest are forgotten). */
function firstTime(p: Parts, key: string): boolean {
  if (p.logged.has(key)) return false;
  if (p.logged.size >= LOGGED_REJECTIONS) p.logged.delete(p.logged.values().next().value!);
  p.logged.add(key);
  return true;
}

/** The record's unreachable list; damaged, it only costs the clusters' explanation. */
function readUnreachable(fields: Record<string, string>, id: string, logger: Logger): string[] {
  const raw = fields[UNREACHABLE_FIELD];
  if (raw === undefined) return [];
  try {
    return parseUnreachable(raw);
  } catch (err) {
    logger.warn("unreachable list unreadable", { event_id: id, error: describeError(err) });
    return [];
  }
}
