/**
 * Every metric an alert uses — the alerts docs/operations.md proposes and the
 * chart's PrometheusRule ships — is on the first scrape of a freshly started
 * web and worker, with a 0 sample. An `increase()` over a series that appears
 * only at its first increment never sees that increment, so the first incident
 * would go unalerted. Both also say what runs (kuberollouttrigger_build_info,
 * deno.json's version) and export the process series their permission sets
 * let them read, from the first scrape.
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { ROOT, startProgram, startWeb } from "../helpers/program.ts";
import { startIssuer, TEST_AUDIENCE } from "../helpers/issuer.ts";
import { withoutValkey } from "../helpers/skip.ts";
import { startValkey } from "../helpers/valkey.ts";

/** The metric names in the alert expressions of docs/operations.md. */
function docAlertMetrics(): string[] {
  const doc = Deno.readTextFileSync(`${ROOT}docs/operations.md`);
  const section = doc.split("Alerts worth having")[1]?.split("\n## ")[0] ?? "";
  assert(section.length > 0, "docs/operations.md has its alerts section");
  const names = new Set<string>();
  for (const [, expr] of section.matchAll(/`([^`]+)`/g)) {
    // Expressions only; a bare metric name ("a sudden rise in ...") is advice, not an alert.
    if (!/[(=<>]/.test(expr)) continue;
    for (const [name] of expr.matchAll(/kuberollouttrigger_[a-z_]+/g)) names.add(name);
  }
  return [...names];
}

/** The metric names the chart's PrometheusRule alerts on. */
function ruleMetrics(): string[] {
  const rule = Deno.readTextFileSync(
    `${ROOT}k8s/helm/kuberollouttrigger/templates/prometheusrule.yaml`,
  );
  return [...new Set([...rule.matchAll(/kuberollouttrigger_[a-z_]+/g)].map((m) => m[0]))];
}

const VERSION = JSON.parse(Deno.readTextFileSync(`${ROOT}deno.json`)).version as string;

/** The unlabelled samples of a scrape by name, and its kuberollouttrigger_build_info lines. */
function processView(scrape: string) {
  const values = new Map<string, number>();
  for (const [, name, value] of scrape.matchAll(/^(process_[a-z_]+) (\S+)$/gm)) {
    values.set(name, Number(value));
  }
  const buildInfo = scrape.split("\n").filter((l) => l.startsWith("kuberollouttrigger_build_info"));
  return { values, buildInfo };
}

/**
 * What docs/operations.md promises of a program started at `startedAt` (seconds)
 * under its shipped permission set: build_info, CPU, memory and start time;
 * no open descriptors, which Deno shows only to a process with every permission.
 */
function assertProcessSeries(mode: string, scrape: string, startedAt: number): void {
  const { values, buildInfo } = processView(scrape);
  assertEquals(buildInfo, [`kuberollouttrigger_build_info{mode="${mode}",version="${VERSION}"} 1`]);
  assertEquals(
    [...values.keys()].sort(),
    ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds"],
    `${mode}: the process series its permissions let it read, and only those`,
  );
  const cpu = values.get("process_cpu_seconds_total")!;
  assert(cpu > 0 && cpu < 600, `${mode}: cpu ${cpu}`);
  const rss = values.get("process_resident_memory_bytes")!;
  assert(rss > 10 * 2 ** 20 && rss < 4 * 2 ** 30, `${mode}: resident memory ${rss}`);
  const start = values.get("process_start_time_seconds")!;
  assert(
    start >= startedAt - 1 && start <= Date.now() / 1000,
    `${mode}: started at ${start}, spawned at ${startedAt}`,
  );
  assert(!scrape.includes("process_open_fds"), `${mode}: no open_fds under -P=${mode}`);
}

/**
 * The metric names a scrape has a sample for: counters with a sample at 0
 * (nothing has happened yet), gauges with any value (inventory_current may
 * already be 1).
 */
function presentFamilies(scrape: string): Set<string> {
  const out = new Set<string>();
  for (const [, name, value] of scrape.matchAll(/^([a-z_]+)(?:\{[^}]*\})? (\S+)$/gm)) {
    if (!name.endsWith("_total") || value === "0") out.add(name);
  }
  return out;
}

Deno.test({
  name:
    "every metric an alert uses is on the first scrape of web and worker, counters at 0, with build_info and the process series",
  ignore: withoutValkey(),
  async fn() {
    const wanted = [...new Set([...docAlertMetrics(), ...ruleMetrics()])].sort();
    assert(wanted.length >= 8, `alerts name their metrics: ${wanted}`);
    assert(wanted.includes("kuberollouttrigger_worker_stream_reading"));
    assert(wanted.includes("kuberollouttrigger_worker_events_total"));
    assert(wanted.includes("kuberollouttrigger_publish_failures_total"));
    assert(wanted.includes("kuberollouttrigger_worker_watch_errors_total"));

    const issuer = await startIssuer();
    const valkey = await startValkey();
    const inventory = `${ROOT}k8s/dev/local-inventory.yaml`;
    const startedAt = Date.now() / 1000;
    const web = await startWeb({
      VALKEY_ADDR: valkey.addr,
      ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
      GITHUB_OIDC_ISSUER: issuer.url,
      GITHUB_OIDC_AUDIENCE: TEST_AUDIENCE,
      GITHUB_ALLOWED_ORG: "acme",
    });
    const worker = startProgram({
      args: ["worker", "--health-listen-addr", "127.0.0.1:0"],
      env: {
        VALKEY_ADDR: valkey.addr,
        ALLOWED_IMAGE_PREFIX: "ghcr.io/acme",
        LOCAL_INVENTORY: inventory,
        WATCH_NAMESPACES: "apps",
      },
      permissions: ["-P=worker", `--allow-read=${inventory}`],
    });
    try {
      const listening = await worker.waitForLog(
        (l) => l.msg === "worker health server listening",
        20_000,
      );
      const scrapes = {
        web: await fetch(`${web.url}/metrics`).then((r) => r.text()),
        worker: await fetch(`http://${listening.addr}/metrics`).then((r) => r.text()),
      };
      const present = {
        web: presentFamilies(scrapes.web),
        worker: presentFamilies(scrapes.worker),
      };
      const absent = wanted.filter((name) => {
        const mode = name.startsWith("kuberollouttrigger_worker_") ? "worker" : "web";
        return !present[mode].has(name);
      });
      assertEquals(absent, [], "families missing (or a counter not at 0) on the first scrape");
      // Per-scope counters carry the scope the worker follows, not a placeholder.
      assert(
        scrapes.worker.includes('kuberollouttrigger_worker_watch_errors_total{scope="apps"} 0'),
        scrapes.worker,
      );
      assert(
        scrapes.web.includes('kuberollouttrigger_publish_failures_total{reason="no_subscriber"} 0'),
        scrapes.web,
      );
      assertProcessSeries("web", scrapes.web, startedAt);
      assertProcessSeries("worker", scrapes.worker, startedAt);
    } finally {
      await worker.stop();
      await web.program.stop();
      await valkey.stop();
      await issuer.stop();
    }
  },
});
