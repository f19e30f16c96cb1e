/**
 * Every metric an alert uses — the alerts docs/operations.md proposes and the
 * chart's PrometheusRule ships — is on the first scrape of a freshly started
 * web and worker, with a 0 sample. An `increase()` over a series that appears
 * only at its first increment never sees that increment, so the first incident
 * would go unalerted.
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
  name: "every metric an alert uses is on the first scrape of web and worker, counters at 0",
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
    } finally {
      await worker.stop();
      await web.program.stop();
      await valkey.stop();
      await issuer.stop();
    }
  },
});
