import { assertEquals } from "../helpers/assert.ts";
import { AuthError } from "../../web/reasons.ts";
import type { GitHubClaims } from "../../web/oidc.ts";
import { asciiLowerCase } from "../../lib/setting_values.ts";
import { createAuthorizer, type PolicyOptions } from "../../web/policy.ts";
import { githubClaims, orgOnlyPolicy } from "../helpers/issuer.ts";

const NONE: PolicyOptions = orgOnlyPolicy();

const claims = (extra: Record<string, unknown> = {}) =>
  ({ ...githubClaims("https://issuer", 0), ...extra }) as GitHubClaims;

/** "allowed", or the reason of the AuthError thrown; anything else fails the test. */
function reason(options: Partial<PolicyOptions>, c: GitHubClaims): string {
  const authorize = createAuthorizer({ ...NONE, ...options });
  try {
    authorize(c);
    return "allowed";
  } catch (err) {
    if (err instanceof AuthError) return err.reason;
    throw err;
  }
}

Deno.test("createAuthorizer() allows the org in any case and nothing else by default", () => {
  assertEquals(reason({}, claims({ repository_owner: "ACME", repository: "ACME/app" })), "allowed");
  assertEquals(
    reason({}, claims({ repository_owner: "acme-evil", repository: "acme-evil/app" })),
    "org_not_allowed",
  );
  assertEquals(reason({}, claims({ repository_owner: undefined })), "claim_repository_owner");
  assertEquals(reason({}, claims({ repository: "evil/app" })), "repository_mismatch");
});

// Each rule of the policy once: a case it allows and a case only it denies, so
// deleting or loosening any one rule fails its step.
Deno.test("createAuthorizer() applies each optional narrower rule", async (t) => {
  const cases: [string, Partial<PolicyOptions>, Record<string, unknown>, string][] = [
    ["repository allowed", { allowedRepositories: ["acme/app"] }, {}, "allowed"],
    ["repository allowed in another case", { allowedRepositories: ["acme/app"] }, {
      repository: "Acme/App",
    }, "allowed"],
    [
      "repository not allowed",
      { allowedRepositories: ["acme/other"] },
      {},
      "repository_not_allowed",
    ],
    ["ref allowed", { allowedRefs: ["refs/heads/main"] }, {}, "allowed"],
    [
      "ref not allowed",
      { allowedRefs: ["refs/heads/main"] },
      { ref: "refs/heads/feature" },
      "ref_not_allowed",
    ],
    ["event name allowed", { allowedEventNames: ["push"] }, {}, "allowed"],
    ["event name not allowed", { allowedEventNames: ["push"] }, {
      event_name: "pull_request_target",
    }, "event_name_not_allowed"],
    ["environment allowed", { allowedEnvironments: ["dev"] }, {}, "allowed"],
    ["environment required but absent", { allowedEnvironments: ["dev"] }, {
      environment: undefined,
    }, "claim_environment"],
    ["environment not allowed", { allowedEnvironments: ["prod"] }, {}, "environment_not_allowed"],
    [
      "workflow ref allowed",
      { allowedWorkflowRefs: ["acme/app/.github/workflows/build.yml@refs/heads/main"] },
      {},
      "allowed",
    ],
    [
      "workflow ref not allowed",
      { allowedWorkflowRefs: ["acme/app/.github/workflows/release.yml@refs/heads/main"] },
      {},
      "workflow_ref_not_allowed",
    ],
    [
      "job workflow ref allowed",
      { allowedJobWorkflowRefs: ["acme/app/.github/workflows/build.yml@refs/heads/main"] },
      {},
      "allowed",
    ],
    [
      "job workflow ref not allowed (a reusable workflow from elsewhere)",
      { allowedJobWorkflowRefs: ["acme/app/.github/workflows/build.yml@refs/heads/main"] },
      { job_workflow_ref: "evil/tools/.github/workflows/deploy.yml@refs/heads/main" },
      "job_workflow_ref_not_allowed",
    ],
    ["owner id pinned and matching", { allowedOwnerIds: ["1001"] }, {}, "allowed"],
    [
      "owner id pinned and different",
      { allowedOwnerIds: ["1001"] },
      { repository_owner_id: "9999" },
      "owner_id_not_allowed",
    ],
    ["owner id pinned, number instead of string", { allowedOwnerIds: ["1001"] }, {
      repository_owner_id: 1001,
    }, "claim_repository_owner_id"],
    ["repository id pinned and matching", { allowedRepositoryIds: ["2002"] }, {}, "allowed"],
    [
      "repository id pinned and different",
      { allowedRepositoryIds: ["7"] },
      {},
      "repository_id_not_allowed",
    ],
  ];
  for (const [name, options, extra, expected] of cases) {
    await t.step(name, () => assertEquals(reason(options, claims(extra)), expected));
  }
});

Deno.test("security: createAuthorizer() accepts only GitHub's repository shape", async (t) => {
  const cases: [string, Record<string, unknown>, string][] = [
    ["owner/name", {}, "allowed"],
    ["the owner part in another case", { repository: "ACME/app" }, "allowed"],
    ["no slash", { repository: "acme" }, "claim_repository"],
    ["an empty name", { repository: "acme/" }, "claim_repository"],
    ["an empty owner part", { repository: "/app" }, "claim_repository"],
    ["a further slash", { repository: "acme/app/extra" }, "claim_repository"],
    ["a name of '..'", { repository: "acme/.." }, "claim_repository"],
    ["a space in the name", { repository: "acme/my app" }, "claim_repository"],
    ["another owner's repository", { repository: "evil/app" }, "repository_mismatch"],
    ["an owner part that only starts with the owner", {
      repository: "acme-evil/app",
    }, "repository_mismatch"],
    ["repository not a string", { repository: ["acme/app"] }, "claim_repository"],
  ];
  for (const [name, extra, expected] of cases) {
    await t.step(name, () => assertEquals(reason({}, claims(extra)), expected));
  }
});

Deno.test("security: createAuthorizer() compares names as ASCII and refuses anything else", async (t) => {
  // U+212A KELVIN SIGN lower-cases to "k"; U+0130 to "i" plus a combining dot.
  const kelvin = "\u212A";
  const kube = orgOnlyPolicy(["kube"]);
  const cases: [string, PolicyOptions, Record<string, unknown>, string][] = [
    ["the ASCII org", kube, { repository_owner: "KUBE", repository: "Kube/app" }, "allowed"],
    [
      "a Kelvin sign for the K of an allowed org",
      kube,
      { repository_owner: `${kelvin}ube`, repository: `${kelvin}ube/app` },
      "claim_repository_owner",
    ],
    [
      "a Kelvin sign in the repository's owner part",
      kube,
      { repository_owner: "kube", repository: `${kelvin}ube/app` },
      "claim_repository",
    ],
    [
      "a Kelvin sign in a repository on the allow list",
      { ...kube, allowedRepositories: ["kube/kit"] },
      { repository_owner: "kube", repository: `kube/${kelvin}it` },
      "claim_repository",
    ],
    [
      "a dotted capital I for the i of an allowed org",
      orgOnlyPolicy(["acmei"]),
      { repository_owner: "ACME\u0130", repository: "ACME\u0130/app" },
      "claim_repository_owner",
    ],
    [
      "a full-width letter",
      NONE,
      { repository_owner: "\uff41cme", repository: "\uff41cme/app" },
      "claim_repository_owner",
    ],
  ];
  for (const [name, options, extra, expected] of cases) {
    await t.step(name, () => assertEquals(reason(options, claims(extra)), expected));
  }
});

Deno.test("asciiLowerCase() folds A-Z only, so no Unicode letter becomes ASCII", () => {
  assertEquals(asciiLowerCase("AcMe-Z_09.x"), "acme-z_09.x");
  assertEquals(asciiLowerCase("\u212Aube"), "\u212Aube");
  assertEquals(asciiLowerCase("\u0130"), "\u0130");
});
