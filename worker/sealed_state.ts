/**
 * What a worker keeps in Valkey and later turns into its cluster's signed
 * report (the dedup window's record of a restart, the rollouts it follows)
 * is sealed with the cluster's REPORT_SIGNING_KEY and opened only when the
 * seal is this cluster's: otherwise Valkey write access could forge the input
 * and have the cluster sign a made-up outcome. Without a key nothing is
 * sealed (reports are unsigned then, and prove nothing anyway).
 *
 * A sealed value is `<86-char signature>.<text>`; the signature covers
 * STATE_CONTEXT, the value's purpose (`context`: which key it was written
 * under, so a value cannot be moved to another key) and the text.
 */

import type { SigningKey } from "../shared/signing_key.ts";

/** Domain separation prefix of a seal (distinct from reports' and events'). */
export const STATE_CONTEXT = "kuberollouttrigger worker state v1\n";

const SEALED = /^([A-Za-z0-9_-]{86})\.([\s\S]*)$/;
const encoder = new TextEncoder();

/** Seals and opens state. */
export interface StateSeal {
  /** The value to store for `text` under `context`. */
  seal(context: string, text: string): string;
  /** The text, when `raw` was sealed under `context` by this cluster; else undefined. */
  open(context: string, raw: string): Promise<string | undefined>;
}

/** No key: state is stored as it is. */
export const UNSEALED: StateSeal = {
  seal: (_context, text) => text,
  open: (_context, raw) => Promise.resolve(raw),
};

function bytes(context: string, text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${STATE_CONTEXT}${context}\n${text}`);
}

/** Seals with the cluster's key; opens with its public half. */
export async function createStateSeal(key: SigningKey): Promise<StateSeal> {
  const verifyKey = await crypto.subtle.importKey("raw", key.publicKey, "Ed25519", false, [
    "verify",
  ]);
  return {
    seal: (context, text) => `${key.sign(bytes(context, text))}.${text}`,
    async open(context, raw) {
      const m = SEALED.exec(raw);
      if (!m) return undefined;
      const sig = Uint8Array.fromBase64(m[1], { alphabet: "base64url" });
      const ok = await crypto.subtle.verify("Ed25519", verifyKey, sig, bytes(context, m[2]))
        .catch(() => false);
      return ok ? m[2] : undefined;
    },
  };
}
