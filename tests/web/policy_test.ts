import { assertEquals, assertThrows } from "../helpers/assert.ts";
import { AuthError } from "../../shared/errors.ts";
import type { GitHubClaims } from "../../web/oidc.ts";
import { createAuthorizer, type PolicyOptions } from "../../web/policy.ts";
import { githubClaims, orgOnlyPolicy } from "../helpers/issuer.ts";

const NONE: PolicyOptions = orgOnlyPolicy();

const claims = (extra: Record<string, unknown> = {}) =>
  ({ ...githubClaims("https://issuer", 0), ...extra }) as GitHubClaims;

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
  assertThrows(() => createAuthorizer(NONE)(claims({ repository: "evil/app" })));
});

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
    ["event name not allowed", { allowedEventNames: ["push"] }, {
      event_name: "pull_request_target",
    }, "event_name_not_allowed"],
    ["environment required but absent", { allowedEnvironments: ["dev"] }, {
      environment: undefined,
    }, "claim_environment"],
    ["environment not allowed", { allowedEnvironments: ["prod"] }, {}, "environment_not_allowed"],
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
    ["owner id pinned and matching", { allowedOwnerIds: ["1001"] }, {}, "allowed"],
    ["owner id pinned, number instead of string", { allowedOwnerIds: ["1001"] }, {
      repository_owner_id: 1001,
    }, "claim_repository_owner_id"],
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
