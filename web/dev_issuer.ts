/**
 * Dev mode's stand-in for GitHub: an ephemeral RSA key made at startup, a key
 * store holding only it, and POST /dev/token, which mints GitHub-shaped tokens
 * for loopback clients only. Signature checks stay on: dev tokens go through
 * the same verifier, claim rules and event validation as production tokens.
 */

import { generateKeyPair, SignJWT } from "jose";
import { AuthError, Reason } from "./reasons.ts";
import { isLoopbackHost } from "../lib/setting_values.ts";
import { parseStrictJson } from "../lib/strict_json.ts";
import type { Route } from "./route.ts";
import type { KeyStore } from "./jwks.ts";
import { json } from "../lib/json_response.ts";

/** The path that mints dev tokens. */
export const DEV_TOKEN_PATH = "/dev/token";

/** What dev mode puts in place of the real issuer. */
export interface DevIssuer {
  issuer: string;
  keys: KeyStore;
  routes: Record<string, Route>;
}

/** Options for createDevIssuer. */
export interface DevIssuerOptions {
  audience: string;
  /** The first allowed org becomes the default repository_owner. */
  allowedOrgs: readonly string[];
  now?: () => number;
}

const OVERRIDABLE = [
  "repository",
  "ref",
  "event_name",
  "environment",
  "workflow_ref",
  "job_workflow_ref",
];

/** Creates the dev issuer with a fresh key; nothing is written anywhere. */
export async function createDevIssuer(options: DevIssuerOptions): Promise<DevIssuer> {
  const { privateKey, publicKey } = await generateKeyPair("RS256");
  const kid = `dev-${crypto.randomUUID()}`;
  // Not a URL: nothing is ever fetched for it, and it can never equal a real issuer.
  const issuer = `urn:kuberollouttrigger:dev:${crypto.randomUUID()}`;
  const now = options.now ?? Date.now;
  const owner = options.allowedOrgs[0] ?? "dev";

  const mint: Route = async (req, info) => {
    // Security: only a process on this machine may mint tokens.
    if (!isLoopbackHost(info.remoteAddr.hostname)) {
      throw new AuthError(
        Reason.dev_token_not_loopback,
        `dev token requested from ${info.remoteAddr.hostname}`,
      );
    }
    const text = (await req.text()).slice(0, 4096);
    let overrides;
    try {
      overrides = text.trim() === "" ? {} : parseStrictJson(text);
    } catch (err) {
      return json(400, { error: `body is not valid JSON: ${(err as Error).message}` });
    }
    if (overrides === null || typeof overrides !== "object" || Array.isArray(overrides)) {
      return json(400, { error: "body must be a JSON object of claim overrides" });
    }
    const claims: Record<string, unknown> = {
      repository: `${owner}/dev`,
      ref: "refs/heads/main",
      event_name: "push",
      workflow_ref: `${owner}/dev/.github/workflows/dev.yml@refs/heads/main`,
      job_workflow_ref: `${owner}/dev/.github/workflows/dev.yml@refs/heads/main`,
    };
    for (const [key, value] of Object.entries(overrides)) {
      if (!OVERRIDABLE.includes(key) || typeof value !== "string") {
        return json(400, {
          error: `claim "${key.slice(0, 40)}" cannot be set; allowed: ${OVERRIDABLE.join(", ")}`,
        });
      }
      claims[key] = value;
    }
    const repository = String(claims.repository);
    const seconds = Math.floor(now() / 1000);
    const token = await new SignJWT({
      ...claims,
      repository_owner: repository.split("/")[0],
      repository_owner_id: "0",
      repository_id: "0",
      sub: `repo:${repository}:ref:${claims.ref}`,
    })
      .setProtectedHeader({ alg: "RS256", kid, typ: "JWT" })
      .setIssuer(issuer)
      .setAudience(options.audience)
      .setIssuedAt(seconds)
      .setNotBefore(seconds - 5)
      .setExpirationTime(seconds + 300)
      .setJti(crypto.randomUUID())
      .sign(privateKey);
    return json(200, { token, expires_in: 300, dev_mode: true });
  };

  return {
    issuer,
    keys: {
      getKey: (id) => Promise.resolve(id === kid ? publicKey as CryptoKey : undefined),
      ready: () => Promise.resolve(true),
    },
    routes: { [DEV_TOKEN_PATH]: mint },
  };
}
