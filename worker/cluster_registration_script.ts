/**
 * One registration of this worker's cluster under its CLUSTER_NAME, in one
 * script and one round trip (worker/cluster_registration.ts runs it each
 * interval). The script reads the identity last registered under the name
 * (CLUSTER_IDENTITIES_KEY): when that is another cluster's (no fingerprint in
 * common, worker/cluster_identity.ts) and was written within NAME_HOLD_MS,
 * it writes nothing and answers a conflict. The hold is far longer than the
 * live window on purpose: a cluster whose workers are all down for a while
 * (a drain, an upgrade) keeps its name, so another worker given the same
 * name by mistake cannot take its consumer group and its backlog over. An
 * operator frees a name at once by removing its field (docs/operations.md). Otherwise it writes this
 * cluster's identity and, when asked to announce, scores the name in
 * CLUSTERS_KEY, the set web reads to know which clusters must report. It
 * never removes members of CLUSTERS_KEY: web forgets silent clusters by its
 * own setting. Both keys carry the product's hash tag, so the script runs on
 * one node of a Valkey Cluster.
 *
 * Security: both keys can be written by anyone with the Valkey password. The
 * script treats a stored record it cannot read strictly (oversized, not JSON,
 * wrong fields, dated beyond the window in the future) as stale and
 * overwrites it; its answer is checked again here before any of it reaches a
 * log line.
 */

import { createHash } from "node:crypto";
import { CLUSTER_LIVE_MS, CLUSTERS_KEY } from "../shared/event_status.ts";
import type { ValkeyCommands } from "../shared/valkey_client.ts";
import { productKey } from "../shared/valkey_keys.ts";
import { ABOUT_MAX_LENGTH, type ClusterIdentity, MAX_CA_CERTIFICATES } from "./cluster_identity.ts";

/** Hash: field a cluster name, value the JSON `{fingerprints, about, at}` last registered. */
export const CLUSTER_IDENTITIES_KEY = productKey("cluster-identities");
/** How long a name stays another cluster's after its last registration. */
export const NAME_HOLD_MS = 86_400_000;
/** Longest stored record the script reads; ours are far shorter. */
const MAX_RECORD_LENGTH = 2048;

// KEYS: the clusters set, the identities hash. ARGV: cluster name, now (ms), hold (ms),
// our record, "1" to score the name in the clusters set, then our fingerprints.
// Answers {1} registered, {2, about} registered over another cluster's stale record,
// {0, about} another cluster holds the name (nothing written). A record it cannot read
// is stale. A record written more than the window in the future is stale too, so a bad
// clock or a forged `at` cannot hold a name forever.
const REGISTER_SCRIPT = `
local now, hold, live = tonumber(ARGV[2]), tonumber(ARGV[3]), ${CLUSTER_LIVE_MS}
local mine = {}
for i = 6, #ARGV do mine[ARGV[i]] = true end
local other = nil
local stored = redis.call('HGET', KEYS[2], ARGV[1])
if stored and #stored <= ${MAX_RECORD_LENGTH} then
  local ok, rec = pcall(cjson.decode, stored)
  local fps = ok and type(rec) == 'table' and rec.fingerprints
  if type(fps) == 'table' and type(rec.at) == 'number' and type(rec.about) == 'string'
      and #rec.about <= ${ABOUT_MAX_LENGTH} and string.match(rec.about, '^[ -~]+$')
      and #fps >= 1 and #fps <= ${MAX_CA_CERTIFICATES} then
    local valid, shared = true, false
    for _, f in ipairs(fps) do
      if type(f) ~= 'string' or #f ~= 16 or not string.match(f, '^[0-9a-f]+$') then
        valid = false
      elseif mine[f] then
        shared = true
      end
    end
    if valid and not shared then
      if rec.at >= now - hold and rec.at <= now + live then return {0, rec.about} end
      other = rec.about
    end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
if ARGV[5] == '1' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1]) end
if other then return {2, other} end
return {1}
`;

// EVALSHA sends 40 bytes instead of the script; after a Valkey restart or
// SCRIPT FLUSH it answers NOSCRIPT without running anything, so sending the
// script then is still one run.
const REGISTER_SCRIPT_SHA1 = createHash("sha1").update(REGISTER_SCRIPT).digest("hex");

async function runScript(client: Pick<ValkeyCommands, "call">, keysAndArgs: (string | number)[]) {
  try {
    return await client.call("EVALSHA", REGISTER_SCRIPT_SHA1, ...keysAndArgs);
  } catch (err) {
    if (!(err instanceof Error && err.message.startsWith("NOSCRIPT"))) throw err;
    return await client.call("EVAL", REGISTER_SCRIPT, ...keysAndArgs);
  }
}

/** What one registration attempt found. */
export type RegistrationOutcome =
  | { kind: "registered" }
  /** Registered over the record of another cluster, silent for longer than the live window. */
  | { kind: "taken_over"; other: string }
  /** Another cluster holds the name; nothing was written. */
  | { kind: "conflict"; other: string };

const ABOUT = new RegExp(`^[\\x20-\\x7e]{1,${ABOUT_MAX_LENGTH}}$`);

/** The script's answer, checked: anything else is an error, like a failed command. */
function readOutcome(reply: unknown): RegistrationOutcome {
  if (Array.isArray(reply)) {
    const [code, other] = reply;
    if (code === 1 && reply.length === 1) return { kind: "registered" };
    if ((code === 0 || code === 2) && reply.length === 2 && typeof other === "string") {
      // Security: text read from Valkey; only short printable ASCII reaches a log line.
      const about = ABOUT.test(other) ? other : "a record that cannot be shown";
      return { kind: code === 0 ? "conflict" : "taken_over", other: about };
    }
  }
  throw new Error("Valkey answered the cluster registration script oddly");
}

/** One attempt: registers `identity` under the name unless another live cluster holds it. */
export async function registerCluster(
  client: Pick<ValkeyCommands, "call">,
  input: { clusterName: string; identity: ClusterIdentity; now: number; announce: boolean },
): Promise<RegistrationOutcome> {
  const { identity, clusterName } = input;
  const now = Math.floor(input.now);
  const record = JSON.stringify({
    fingerprints: identity.fingerprints,
    about: identity.about,
    at: now,
  });
  const reply = await runScript(client, [
    2,
    CLUSTERS_KEY,
    CLUSTER_IDENTITIES_KEY,
    clusterName,
    now,
    NAME_HOLD_MS,
    record,
    input.announce ? "1" : "0",
    ...identity.fingerprints,
  ]);
  return readOutcome(reply);
}
