/**
 * A GitHub-like OIDC issuer on loopback for tests: discovery document, JWKS,
 * and a signer that produces tokens with GitHub's real claim set. It can be
 * told to fail, stall or redirect, and counts every request it serves.
 */

import { exportJWK, exportSPKI, generateKeyPair, type JWTPayload, SignJWT } from "jose";

/** Ways the issuer can misbehave. */
export type IssuerMode = "ok" | "down" | "slow" | "redirect";

/** A running test issuer. */
export interface TestIssuer {
  /** `http://127.0.0.1:<port>` — the iss of the tokens it signs. */
  url: string;
  kid: string;
  /** Requests served, by path. */
  hits: Map<string, number>;
  mode: IssuerMode;
  /** A valid token for `audience` with GitHub's claims, overridable. */
  sign(options?: SignOptions): Promise<string>;
  /** Encodes header and payload as given, with the signature bytes given (or empty). */
  unsigned(
    header: Record<string, unknown>,
    payload: Record<string, unknown>,
    signature?: Uint8Array,
  ): string;
  /**
   * Signs header and payload JSON text exactly as given (RS256, the current
   * key), so a test can send what no JSON library writes: repeated members,
   * numbers such as 1e400 or 1.0000001.
   */
  signRaw(header: string, payload: string): Promise<string>;
  /** The public key as SPKI PEM (for the HS256 key-confusion attack). */
  publicKeyPem(): Promise<string>;
  /** Replaces the signing key with a new one under a new kid (key rotation). */
  rotate(): Promise<void>;
  stop(): Promise<void>;
}

/** Options for TestIssuer.sign. */
export interface SignOptions {
  claims?: Record<string, unknown>;
  /** Claims to delete from the default set. */
  omit?: string[];
  header?: Record<string, unknown>;
  /** Seconds since the epoch used for iat/nbf/exp (default: now). */
  now?: number;
  alg?: "RS256" | "RS384" | "ES256";
}

/** The audience tests configure web with. */
export const TEST_AUDIENCE = "https://kuberollouttrigger.test";

const b64url = (bytes: Uint8Array) =>
  btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const b64json = (value: unknown) => b64url(new TextEncoder().encode(JSON.stringify(value)));

/** GitHub's claim set for a push to main of acme/app. */
export function githubClaims(issuer: string, now: number): JWTPayload & Record<string, unknown> {
  return {
    jti: crypto.randomUUID(),
    sub: "repo:acme/app:ref:refs/heads/main",
    aud: TEST_AUDIENCE,
    ref: "refs/heads/main",
    sha: "4f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
    repository: "acme/app",
    repository_owner: "acme",
    repository_owner_id: "1001",
    repository_id: "2002",
    repository_visibility: "private",
    run_id: "123456789",
    run_number: "42",
    run_attempt: "1",
    actor: "octocat",
    actor_id: "3003",
    workflow: "build",
    workflow_ref: "acme/app/.github/workflows/build.yml@refs/heads/main",
    workflow_sha: "4f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
    job_workflow_ref: "acme/app/.github/workflows/build.yml@refs/heads/main",
    job_workflow_sha: "4f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a",
    head_ref: "",
    base_ref: "",
    event_name: "push",
    ref_type: "branch",
    ref_protected: "true",
    environment: "dev",
    runner_environment: "github-hosted",
    iss: issuer,
    nbf: now - 5,
    iat: now,
    exp: now + 300,
  };
}

/** Starts a test issuer on 127.0.0.1 with a fresh RSA key. */
export async function startIssuer(): Promise<TestIssuer> {
  let pair = await generateKeyPair("RS256", { extractable: true });
  let kid = `test-${crypto.randomUUID().slice(0, 8)}`;
  let jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid, alg: "RS256", use: "sig" }] };
  const hits = new Map<string, number>();
  const state = { mode: "ok" as IssuerMode, url: "" };
  const controller = new AbortController();

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen: () => {},
  }, async (req) => {
    const path = new URL(req.url).pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    if (state.mode === "down") return new Response("unavailable", { status: 503 });
    if (state.mode === "slow") await new Promise((r) => setTimeout(r, 3000));
    if (state.mode === "redirect") {
      return new Response(null, {
        status: 302,
        headers: { location: `${state.url}/elsewhere${path}` },
      });
    }
    if (path === "/.well-known/openid-configuration") {
      return Response.json({ issuer: state.url, jwks_uri: `${state.url}/.well-known/jwks` });
    }
    if (path === "/.well-known/jwks") return Response.json(jwks);
    return new Response("not found", { status: 404 });
  });
  state.url = `http://127.0.0.1:${server.addr.port}`;

  const issuer: TestIssuer = {
    url: state.url,
    get kid() {
      return kid;
    },
    hits,
    get mode() {
      return state.mode;
    },
    set mode(value: IssuerMode) {
      state.mode = value;
    },
    async sign(options = {}) {
      const now = options.now ?? Math.floor(Date.now() / 1000);
      const claims: Record<string, unknown> = {
        ...githubClaims(state.url, now),
        ...options.claims,
      };
      for (const name of options.omit ?? []) delete claims[name];
      const alg = options.alg ?? "RS256";
      const key = alg === "RS256" ? pair.privateKey : (await generateKeyPair(alg)).privateKey;
      return await new SignJWT(claims)
        .setProtectedHeader({ alg, kid, typ: "JWT", ...options.header })
        .sign(key);
    },
    unsigned(header, payload, signature = new Uint8Array()) {
      return `${b64json(header)}.${b64json(payload)}.${b64url(signature)}`;
    },
    async signRaw(header, payload) {
      const encode = (text: string) => b64url(new TextEncoder().encode(text));
      const input = `${encode(header)}.${encode(payload)}`;
      const signature = await crypto.subtle.sign(
        "RSASSA-PKCS1-v1_5",
        pair.privateKey,
        new TextEncoder().encode(input),
      );
      return `${input}.${b64url(new Uint8Array(signature))}`;
    },
    publicKeyPem: () => exportSPKI(pair.publicKey),
    async rotate() {
      pair = await generateKeyPair("RS256", { extractable: true });
      kid = `test-${crypto.randomUUID().slice(0, 8)}`;
      jwks = { keys: [{ ...(await exportJWK(pair.publicKey)), kid, alg: "RS256", use: "sig" }] };
    },
    async stop() {
      controller.abort();
      await server.finished;
    },
  };
  return issuer;
}

/** Policy options that allow `orgs` and set none of the optional narrower rules. */
export function orgOnlyPolicy(orgs: string[] = ["acme"]) {
  return {
    allowedOrgs: orgs,
    allowedRepositories: [],
    allowedRefs: [],
    allowedEventNames: [],
    allowedEnvironments: [],
    allowedWorkflowRefs: [],
    allowedJobWorkflowRefs: [],
    allowedOwnerIds: [],
    allowedRepositoryIds: [],
  };
}
