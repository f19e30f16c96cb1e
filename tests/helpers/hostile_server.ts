/**
 * A hostile server standing where web would, for tests of our Action
 * (tests/e2e/action_hostile_test.ts, tests/e2e/action_act_test.ts): it
 * answers the POST and the status reads with bodies no web writes, holding
 * workflow commands, Markdown, HTML, bare URLs, numbers that are not counts,
 * huge strings and too many rows. Each event follows the script its first tag
 * names (`strings`, `skipped`, `errors`, `pending`, `huge`, `counts.<json>`).
 * Every hostile string holds MARKER, so server text can be found wherever it
 * lands.
 */

import { assertServersAllowed } from "./skip.ts";

/** In every hostile string. */
export const MARKER = "EVIL";

/** Strings a hostile server puts wherever the Action prints text. */
export const HOSTILE = [
  "::add-mask::EVIL",
  "##[stop-commands]EVILTOKEN",
  "::set-output name=state::succeeded EVIL",
  "ok\n::error::EVIL",
  "ok\r::warning file=a.ts,line=1::EVIL",
  "ok\r\n  ::ADD-MASK::EVIL",
  "%0A::warning::EVIL%0D%0A##[group]EVIL",
  "##[group]EVIL ##[endgroup]",
  "x ##[set-output name=state]succeeded EVIL",
  "\u0085::debug::EVIL\u2028::notice::EVIL",
  "![EVIL](https://evil.example/p.png)",
  "[click EVIL](https://evil.example)",
  "<img src=x onerror=alert(1)> EVIL",
  '<a href="https://evil.example">EVIL</a>',
  "see https://evil.example/EVIL and www.evil.example or EVIL@evil.example",
  "# heading EVIL",
  "\n# heading EVIL\n---",
  "| EVIL | column |",
  "`EVIL` **EVIL** _EVIL_ ~~EVIL~~ $EVIL$ [^EVIL] #1 &lt;EVIL&gt; \\EVIL",
  "\u001b[31mEVIL\u001b[0m \u202eLIVE\u202c",
];

/** Numbers that are not counts, as raw JSON text. */
export const NOT_COUNTS = [
  '"1\\nstate=succeeded"',
  "1e400",
  "-1",
  "1.5",
  "{}",
  "[3]",
  "true",
  '"3"',
];

const pick = (i: number) => HOSTILE[i % HOSTILE.length];

/** A status body holding every hostile string, with counts that are counts. */
function hostileStatus(state: string, final: boolean): string {
  const deployments = HOSTILE.map((text, i) => ({
    namespace: text,
    name: pick(i + 1),
    result: ["restarted", "skipped", pick(i + 2)][i % 3],
    reason: pick(i + 3),
    rollout: {
      state: i % 2 === 0 ? "baking" : pick(i + 4),
      reason: pick(i + 5),
      replicas: `@@NUMBER${i % NOT_COUNTS.length}@@`,
      updated: 1,
      ready: `@@NUMBER${(i + 1) % NOT_COUNTS.length}@@`,
      available: 2,
    },
  }));
  const body = {
    id: pick(7),
    state,
    final,
    image: pick(10),
    tags: HOSTILE,
    time: pick(3),
    reason: pick(11),
    extra: { "::add-mask::EVIL": pick(1) },
    clusters: [
      {
        cluster: pick(0),
        state: pick(1),
        matched: "@@NUMBER1@@",
        counts: {
          restarted: 3,
          skipped: 1,
          failed: 0,
          dry_run: 0,
          complete: 2,
          progressing: 1,
          rollout_failed: 0,
          unknown_count: 7,
        },
        deployments,
        omitted: 2,
        updated: pick(2),
        reason: pick(4),
      },
      { cluster: pick(14), state: "no_report", deployments: [], omitted: 0, reason: pick(15) },
      { cluster: pick(19), state: pick(12), deployments: [], omitted: 0 },
    ],
  };
  return JSON.stringify(body).replace(
    /"@@NUMBER(\d+)@@"/g,
    (_, n) => NOT_COUNTS[Number(n)],
  );
}

/** How the hostile server answers one event, chosen by the first tag the Action sends. */
interface Script {
  /** Answers to the POST, in order; the last repeats. */
  post: (id: string) => Response[];
  /** Answers to the status reads, in order; the last repeats. */
  get: () => Response[];
}

const json = (status: number, body: string, headers: Record<string, string> = {}) =>
  new Response(body, { status, headers: { "content-type": "application/json", ...headers } });

const accepted = (id: string) =>
  json(
    202,
    JSON.stringify({
      id,
      subscribers: pick(0),
      clusters: [pick(1), pick(6), pick(12)],
      status: pick(14),
      extra: pick(3),
    }),
  );

const SCRIPTS: Record<string, Script> = {
  // Hostile text everywhere, first while in progress (the progress line), then final.
  strings: {
    post: (id) => [accepted(id)],
    get: () => [
      json(200, hostileStatus("in_progress", false)),
      json(200, hostileStatus("succeeded", true)),
    ],
  },
  // Hostile reasons for an event whose every match was skipped.
  skipped: {
    post: (id) => [accepted(id)],
    get: () => [json(200, hostileStatus("skipped", true))],
  },
  // The server's error texts: a POST retried, status reads retried, then refused.
  errors: {
    post: (id) => [
      json(503, JSON.stringify({ error: pick(1) + " " + pick(3) }), { "retry-after": "1" }),
      accepted(id),
    ],
    get: () => [
      json(503, JSON.stringify({ error: pick(5) }), { "retry-after": "EVIL" }),
      json(500, JSON.stringify({ error: pick(6) + pick(8) })),
      json(418, JSON.stringify({ error: pick(0) + " " + pick(2) + " " + pick(3) + pick(18) })),
    ],
  },
  // A final state that is not a result.
  pending: {
    post: (id) => [accepted(id)],
    get: () => [json(200, hostileStatus("pending", true))],
  },
  // A huge reason and more rows than the summary shows.
  huge: {
    post: (id) => [accepted(id)],
    get: () => {
      const body = JSON.parse(hostileStatus("failed", true).replace(/1e400/g, "0"));
      const many = Array.from({ length: 400 }, (_, i) => ({
        namespace: "shop",
        name: `web-${i}`,
        result: "failed",
        reason: i === 0 ? `${MARKER} ${"##[stop-commands]x ".repeat(60_000)}` : pick(i),
      }));
      body.clusters[0].deployments = many;
      return [json(200, JSON.stringify(body))];
    },
  },
};

/** Status bodies whose counts are not counts: each must be refused, whatever else it says. */
function badCounts(value: string): Response {
  const body = hostileStatus("succeeded", true).replace(
    '"restarted":3',
    `"restarted":${value}`,
  );
  return json(200, body);
}

/** A running hostile server. */
export interface HostileServer {
  url: string;
  /** The raw status body served last for an event id. */
  served: Map<string, string>;
  stop(): Promise<void>;
}

/** The server standing where web would: each event follows the script its first tag names. */
export function startHostileServer(): HostileServer {
  assertServersAllowed("a hostile status server");
  interface Entry {
    script: Script;
    id: string;
    posts: number;
    gets: number;
    accepted: boolean;
  }
  const events = new Map<string, Entry>();
  const served = new Map<string, string>();
  const controller = new AbortController();
  let last: Entry | undefined;
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: controller.signal,
    onListen: () => {},
  }, async (req) => {
    const url = new URL(req.url);
    if (req.method === "POST" && url.pathname === "/event") {
      const tag = String((await req.json()).tags[0]);
      const dot = tag.indexOf(".");
      const name = dot < 0 ? tag : tag.slice(0, dot);
      // A retry of an event not accepted yet (after a 503) keeps its id.
      let entry = last && !last.accepted ? last : undefined;
      if (!entry) {
        const variant = tag.slice(dot + 1);
        const script = name === "counts"
          ? { post: (i: string) => [accepted(i)], get: () => [badCounts(variant)] }
          : SCRIPTS[name];
        entry = { script, id: crypto.randomUUID(), posts: 0, gets: 0, accepted: false };
        events.set(entry.id, entry);
      }
      last = entry;
      const answers = entry.script.post(entry.id);
      const answer = answers[Math.min(entry.posts++, answers.length - 1)];
      entry.accepted = answer.status === 202;
      return answer;
    }
    const m = /^\/event\/([0-9a-f-]{36})$/.exec(url.pathname);
    const entry = m ? events.get(m[1]) : undefined;
    if (req.method !== "GET" || !entry || !m) return json(404, '{"error":"not found"}');
    const answers = entry.script.get();
    const answer = answers[Math.min(entry.gets++, answers.length - 1)];
    const text = await answer.text();
    served.set(m[1], text);
    return new Response(text, { status: answer.status, headers: answer.headers });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    served,
    async stop() {
      controller.abort();
      await server.finished;
    },
  };
}
