import { assert, assertEquals } from "../helpers/assert.ts";
import {
  type ClusterStatus,
  type DeploymentReport,
  emptyCounts,
  type EventStatus,
  type ReportCounts,
} from "../../shared/event_status.ts";
import {
  MAX_NOTIFICATION_BYTES,
  MAX_SLACK_CHARS,
  type NotificationAudit,
  notificationBody,
} from "../../web/notification_message.ts";

const AUDIT: NotificationAudit = {
  repository: "acme/app",
  repositoryId: "123",
  ref: "refs/heads/main",
  sha: "0123456789abcdef0123456789abcdef01234567",
  workflowRef: "acme/app/.github/workflows/deploy.yml@refs/heads/main",
  runId: "123",
  runAttempt: "1",
  actor: "octocat",
};

function counts(extra: Partial<ReportCounts>): ReportCounts {
  return { ...emptyCounts(), ...extra };
}

function deployment(name: string, extra: Partial<DeploymentReport> = {}): DeploymentReport {
  return { namespace: "apps", name, result: "restarted", ...extra };
}

function cluster(name: string, extra: Partial<ClusterStatus> = {}): ClusterStatus {
  return {
    cluster: name,
    state: "succeeded",
    matched: 1,
    counts: counts({ restarted: 1, complete: 1 }),
    deployments: [],
    omitted: 0,
    updated: "2026-12-01T10:00:01.000Z",
    ...extra,
  };
}

function status(clusters: ClusterStatus[], extra: Partial<EventStatus> = {}): EventStatus {
  return {
    id: "0f5c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
    state: "failed",
    final: true,
    image: "ghcr.io/acme/app",
    tags: ["dev"],
    time: "2026-12-01T10:00:00.000Z",
    clusters,
    ...extra,
  };
}

const PROD_EU = cluster("prod-eu", {
  state: "failed",
  matched: 2,
  counts: counts({ restarted: 1, failed: 1, rollout_failed: 1 }),
  deployments: [
    deployment("api", {
      rollout: {
        state: "failed",
        reason: "ProgressDeadlineExceeded",
        replicas: 2,
        updated: 1,
        ready: 1,
        available: 1,
      },
    }),
    deployment("web", { result: "failed", reason: "forbidden" }),
  ],
});

function parsed(body: string) {
  return JSON.parse(body);
}

function bytes(text: string): number {
  return new TextEncoder().encode(text).length;
}

function slackText(s: EventStatus, audit = AUDIT): string {
  return parsed(notificationBody(s, audit, "slack")).text;
}

Deno.test("notificationBody() json says the outcome in the status answer's words", async (t) => {
  await t.step("every member, snake_case, audit fields beside the event", () => {
    const body = parsed(notificationBody(status([PROD_EU]), AUDIT, "json"));
    assertEquals(body, {
      event_id: "0f5c2d1e-8a4b-4c3d-9e2f-1a2b3c4d5e6f",
      state: "failed",
      image: "ghcr.io/acme/app",
      tags: ["dev"],
      time: "2026-12-01T10:00:00.000Z",
      repository: "acme/app",
      repository_id: "123",
      ref: "refs/heads/main",
      sha: "0123456789abcdef0123456789abcdef01234567",
      workflow_ref: "acme/app/.github/workflows/deploy.yml@refs/heads/main",
      run_id: "123",
      run_attempt: "1",
      actor: "octocat",
      clusters: [{
        cluster: "prod-eu",
        state: "failed",
        matched: 2,
        counts: counts({ restarted: 1, failed: 1, rollout_failed: 1 }),
        updated: "2026-12-01T10:00:01.000Z",
        deployments: [
          {
            namespace: "apps",
            name: "api",
            result: "restarted",
            rollout: {
              state: "failed",
              reason: "ProgressDeadlineExceeded",
              replicas: 2,
              updated: 1,
              ready: 1,
              available: 1,
            },
          },
          { namespace: "apps", name: "web", result: "failed", reason: "forbidden" },
        ],
        omitted: 0,
      }],
      omitted_clusters: 0,
    });
  });
  await t.step("absent audit fields and reasons are left out, web's reason kept", () => {
    const s = status([], { reason: "no cluster was live or reported" });
    const body = parsed(notificationBody(s, { repository: "acme/app", repositoryId: "1" }, "json"));
    assertEquals(Object.keys(body), [
      "event_id",
      "state",
      "image",
      "tags",
      "time",
      "repository",
      "repository_id",
      "clusters",
      "omitted_clusters",
      "reason",
    ]);
    assertEquals(body.reason, "no cluster was live or reported");
  });
});

Deno.test("notificationBody() json stays within 64 KiB whatever the reports hold", async (t) => {
  const long = "x".repeat(300);
  const fullCluster = (name: string, state: ClusterStatus["state"] = "succeeded") =>
    cluster(name, {
      state,
      reason: long,
      matched: 60,
      deployments: Array.from({ length: 50 }, (_, i) =>
        deployment(`d${i}`, {
          reason: long,
          rollout: {
            state: "complete",
            reason: long,
            replicas: 3,
            updated: 3,
            ready: 3,
            available: 3,
          },
        })),
      omitted: 10,
    });
  await t.step("1000 clusters × 50 Deployments: parses, bounded, every one counted", () => {
    const names = Array.from({ length: 1000 }, (_, i) => `c${String(i).padStart(4, "0")}`);
    const clusters = names.map((n, i) => fullCluster(n, i % 100 === 7 ? "failed" : "succeeded"));
    const started = performance.now();
    const text = notificationBody(status(clusters), AUDIT, "json");
    assert(performance.now() - started < 1000, "bounding serialises every Deployment");
    assert(bytes(text) <= MAX_NOTIFICATION_BYTES, `${bytes(text)} bytes`);
    const body = parsed(text);
    assertEquals(body.clusters.length + body.omitted_clusters, 1000);
    assert(body.clusters.length > 0);
    for (const c of body.clusters) assertEquals(c.deployments.length + c.omitted, 60);
    // The failing clusters are kept before any other, in the status's order.
    const kept: string[] = body.clusters.map((c: ClusterStatus) => c.cluster);
    const failing = clusters.filter((c) => c.state === "failed").map((c) => c.cluster);
    assert(kept.length > failing.length && body.omitted_clusters > 0, `${kept.length} kept`);
    assertEquals(kept.filter((name) => failing.includes(name)), failing);
    assertEquals(kept, kept.toSorted());
  });
  await t.step("the largest clusters lose their last Deployments first, failing ones last", () => {
    const small = cluster("c", {
      deployments: [deployment("d0", { reason: long }), deployment("d1", { reason: long })],
    });
    const text = notificationBody(
      status([fullCluster("a"), fullCluster("b", "failed"), small]),
      AUDIT,
      "json",
    );
    assert(bytes(text) <= MAX_NOTIFICATION_BYTES, `${bytes(text)} bytes`);
    assert(bytes(text) > MAX_NOTIFICATION_BYTES - 2000, `${bytes(text)} bytes: room left unused`);
    const [a, b, c] = parsed(text).clusters;
    assert(a.deployments.length < 50 && a.deployments.length > 2, `${a.deployments.length}`);
    assert([0, 1].includes(b.deployments.length - a.deployments.length), "b has the last room");
    assertEquals(a.deployments.at(-1).name, `d${a.deployments.length - 1}`);
    assertEquals([a.omitted, b.omitted], [60 - a.deployments.length, 60 - b.deployments.length]);
    assertEquals([c.deployments.length, c.omitted], [2, 0]);
  });
  await t.step("a body that fits is sent whole", () => {
    const body = parsed(notificationBody(status([fullCluster("a")]), AUDIT, "json"));
    assertEquals([body.clusters[0].deployments.length, body.clusters[0].omitted], [50, 10]);
  });
  await t.step("the longest head (64 long tags, long multi-byte audit) still fits", () => {
    const wide = "😀".repeat(2000);
    const audit = Object.fromEntries(Object.keys(AUDIT).map((k) => [k, wide]));
    const s = status(
      Array.from({ length: 1000 }, (_, i) => fullCluster(`c${i}`)),
      { image: wide, tags: Array(100).fill(wide), reason: wide, id: wide, time: wide },
    );
    const text = notificationBody(s, audit as unknown as NotificationAudit, "json");
    assert(bytes(text) <= MAX_NOTIFICATION_BYTES, `${bytes(text)} bytes`);
    assertEquals(parsed(text).tags.length, 64);
  });
});

Deno.test("notificationBody() slack says it in a few lines", async (t) => {
  await t.step("a headline, then one line per cluster, failing first", () => {
    const s = status([cluster("ap-south"), PROD_EU, cluster("west", { state: "no_report" })]);
    delete s.clusters[2].counts;
    s.clusters[2].reason = "no report within 30s of publishing";
    assertEquals(slackText(s).split("\n"), [
      "kuberollouttrigger: ghcr.io/acme/app:dev failed (acme/app, run 123)",
      "• prod-eu: failed — 1 of 2 restarted, 1 failed to restart, 1 rollout failed " +
      "(apps/api: ProgressDeadlineExceeded)",
      "• west: no_report (no report within 30s of publishing)",
      "• ap-south: succeeded — 1 of 1 restarted",
    ]);
  });
  await t.step("a rerun, several tags and web's own reason", () => {
    const s = status([], { tags: ["a", "b", "c", "d"], reason: "no cluster was live or reported" });
    assertEquals(slackText(s, { ...AUDIT, runAttempt: "2" }).split("\n"), [
      "kuberollouttrigger: ghcr.io/acme/app:a,b,c +1 failed (acme/app, run 123 attempt 2)",
      "Reason: no cluster was live or reported",
    ]);
  });
  await t.step("at most 20 clusters, then how many more", () => {
    const s = status(Array.from({ length: 25 }, (_, i) => cluster(`c${i}`)));
    const lines = slackText(s).split("\n");
    assertEquals(lines.length, 22);
    assertEquals(lines.at(-1), "… and 5 more clusters");
  });
  await t.step("reasons are cut at 200 characters", () => {
    const line = slackText(status([cluster("a", { reason: "y".repeat(500) })])).split("\n")[1];
    assertEquals(line, `• a: succeeded — 1 of 1 restarted (${"y".repeat(199)}…)`);
  });
});

Deno.test("security: notificationBody() makes hostile report text inert", async (t) => {
  const hostile = "<!channel> <https://evil.example|login>";
  await t.step("slack: no link, mention or formatting command can be formed", () => {
    const s = status([cluster("prod", { state: "failed", reason: hostile })], { image: "<@U1>" });
    const text = slackText(s);
    assert(!/[<>]/.test(text), text);
    assert(text.includes("&lt;!channel&gt; &lt;https:\u200b//evil.example|login&gt;"), text);
    assert(text.startsWith("kuberollouttrigger: &lt;@U1&gt;:dev"), text);
  });
  await t.step("slack: & is escaped first, so an entity in a report stays text", () => {
    assert(
      slackText(status([cluster("a", { reason: "&lt;!here&gt;" })])).includes(
        "&amp;lt;!here&amp;gt;",
      ),
    );
  });
  await t.step("slack: a newline or control character inside a value cannot add a line", () => {
    const s = status([cluster("a", { reason: "one\ntwo\r\n\u2028three\u001b[31m\u202e" })]);
    const lines = slackText(s).split("\n");
    assertEquals(lines.length, 2);
    assertEquals(lines[1], "• a: succeeded — 1 of 1 restarted (one two   three [31m )");
  });
  await t.step("slack: text within 3,000 characters however long the lines", () => {
    const wide = "&".repeat(300);
    const s = status(
      Array.from({ length: 30 }, (_, i) => cluster(`c${i}`, { reason: wide })),
      { image: wide, tags: Array(10).fill(wide), reason: wide },
    );
    const text = slackText(s, { ...AUDIT, repository: wide });
    assert(text.length <= MAX_SLACK_CHARS, `${text.length}`);
    assert(!/&(?!amp;)/.test(text.slice(0, -10)), "an unescaped &");
  });
  await t.step("json: control characters become spaces, lone surrogates parse", () => {
    const s = status([cluster("a", { reason: "x\ny\u001b[2J\ud800" })]);
    assertEquals(parsed(notificationBody(s, AUDIT, "json")).clusters[0].reason, "x y [2J\ufffd");
  });
});
