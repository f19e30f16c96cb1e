/**
 * Reading an event's status record from Valkey (one HGETALL), checking that
 * web signed its binding (when web has a key). Requests that wait on a
 * record are web/status_waiters.ts'.
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
import { verifyBinding } from "./event_signer.ts";
import type { Logger } from "../lib/log.ts";
import { describeValkeyError } from "../shared/valkey_errors.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";

/** A record as read: web's binding and each cluster's report (unreadable ones named). */
export interface StoredStatus {
  binding: StatusBinding;
  reports: Map<string, ClusterReport>;
  /** Clusters whose report field could not be read as a report. */
  unreadable: string[];
  /** Known clusters that were not live when web published. */
  unreachable: string[];
}

/** Reads status records. */
export interface StatusReader {
  /**
   * The record, or undefined when there is none (unknown, expired) or its
   * binding is unreadable or, with binding keys, not signed by one of them.
   */
  read(id: string): Promise<StoredStatus | undefined>;
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

/**
 * Creates the reader on web's command connection. With `bindingKeys` (web's
 * own key and EVENT_VERIFY_KEYS) a binding whose signature does not verify
 * is treated as no record: anyone who can write Valkey could have written it.
 */
export function createStatusReader(
  client: ValkeyCommands,
  logger: Logger,
  bindingKeys?: VerifyKeys,
): StatusReader {
  return {
    async read(id) {
      let fields: Record<string, string>;
      try {
        fields = fieldsOf(await client.call("HGETALL", statusKey(id)));
      } catch (err) {
        throw new AppError(
          "ERR_PUBLISH_FAILED",
          `status read failed: ${describeValkeyError(err)}`,
          {
            cause: err,
          },
        );
      }
      const raw = fields[BINDING_FIELD];
      if (raw === undefined) return undefined;
      let binding: StatusBinding;
      try {
        binding = parseBinding(raw);
      } catch (err) {
        // Security: not written by web (or damaged); nobody can be shown to own it.
        logger.warn("status binding unreadable; answering not found", {
          event_id: id,
          error: describeError(err),
        });
        return undefined;
      }
      if (bindingKeys && !(await verifyBinding(bindingKeys, id, binding))) {
        logger.warn("status binding not signed by web; answering not found", {
          event_id: id,
          reason: binding.sig === undefined ? "unsigned" : "bad_signature",
        });
        return undefined;
      }
      const reports = new Map<string, ClusterReport>();
      const unreadable: string[] = [];
      for (const [field, value] of Object.entries(fields)) {
        const cluster = REPORT_FIELD.exec(field)?.[1];
        if (!cluster) continue;
        try {
          const report = parseClusterReport(value);
          if (report.cluster !== cluster) throw new Error("names another cluster");
          reports.set(cluster, report);
        } catch (err) {
          unreadable.push(cluster);
          logger.warn("cluster report unreadable", {
            event_id: id,
            cluster,
            error: describeError(err),
          });
        }
      }
      return { binding, reports, unreadable, unreachable: readUnreachable(fields, id, logger) };
    },
  };
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
