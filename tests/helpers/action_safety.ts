/**
 * What the Action promises about the server's text, as checks on one run
 * (docs/github-actions.md, "What the server cannot do"): in the job log it
 * starts no workflow command and sits between stop-commands and its resume;
 * in the job summary it adds no link, image, HTML, heading or column; and
 * GITHUB_OUTPUT holds only the three documented outputs, each of its
 * grammar. Server text is recognised by a marker every hostile string holds.
 */

import { assert, assertEquals, assertMatch } from "./assert.ts";
import { commandData, commandIn, readRunnerLog } from "./runner_log.ts";
import { parseOutputFile } from "./action_runner.ts";
import { OVERALL_STATES } from "../../shared/event_status.ts";

const STOP_TOKEN = /^[0-9a-f]{32}$/;

/**
 * The job log: the runner processes only the Action's own commands (masks of
 * the minted tokens, stop-commands with fresh random tokens and their
 * resumes, annotations without properties), commands are not left stopped,
 * and every line holding the marker is inert twice over: no command on its
 * own (the escaping) and read while commands are stopped (the wrapping);
 * only an annotation's one-line data may quote the server.
 */
export function assertLogInert(
  log: string,
  options: { marker: string; minted: string[]; where?: string },
): void {
  const where = options.where ?? "stdout";
  const reading = readRunnerLog(log);
  assert(!reading.stoppedAtEnd, `${where}: commands are still stopped when the step ends`);
  const tokens = new Set<string>();
  let open: string | undefined;
  for (const command of reading.processed) {
    const line = reading.lines[command.line];
    const shown = JSON.stringify(line.slice(0, 200));
    if (open !== undefined) {
      assertEquals(command.name, open, `${where}: only the resume token ends a block: ${shown}`);
      assertEquals(`::${open}::`, line, `${where}: the resume is a line of its own`);
      open = undefined;
      continue;
    }
    switch (command.name) {
      case "add-mask":
        assert(options.minted.includes(command.data), `${where}: a mask of something else`);
        break;
      case "stop-commands":
        assertMatch(command.data, STOP_TOKEN, `${where}: a stop token of 16 random bytes`);
        assert(!tokens.has(command.data), `${where}: a fresh token for each block`);
        tokens.add(command.data);
        open = command.data;
        break;
      case "error":
      case "warning":
        assertEquals(command.form, "::", `${where}: annotations are ours: ${shown}`);
        assert(line.startsWith(`::${command.name}::`), `${where}: no properties: ${shown}`);
        assert(!commandData(command.data).includes("\n"), `${where}: one line: ${shown}`);
        assert(!line.includes("##["), `${where}: no legacy command in an annotation: ${shown}`);
        // act (and any parser matching `::name …::` greedily) would read the name up to a later "::".
        assert(!command.data.includes("::"), `${where}: no "::" in an annotation: ${shown}`);
        break;
      default:
        throw new Error(`${where}: the runner would process ${command.name}: ${shown}`);
    }
  }
  for (const [i, line] of reading.lines.entries()) {
    if (!line.includes(options.marker)) continue;
    const shown = JSON.stringify(line.slice(0, 200));
    const own = commandIn(line, () => true);
    const annotation = own?.form === "::" && (own.name === "error" || own.name === "warning") &&
      line.startsWith(`::${own.name}::`);
    if (annotation) continue;
    assertEquals(own, undefined, `${where}: server text forms a command on its own: ${shown}`);
    assert(
      reading.stoppedLines.has(i),
      `${where}: server text outside a stop-commands block: ${shown}`,
    );
  }
}

/** The cells of a table row, split at `|` that is not backslash-escaped. */
export function markdownCells(row: string): string[] {
  const cells: string[] = [];
  let cell = "";
  for (let i = 0; i < row.length; i++) {
    if (row[i] === "\\" && i + 1 < row.length) {
      cell += row[i] + row[i + 1];
      i++;
    } else if (row[i] === "|") {
      cells.push(cell);
      cell = "";
    } else {
      cell += row[i];
    }
  }
  cells.push(cell);
  return cells;
}

const ACTIVE = "\\`*_[]()#!|~$^";

/** The first Markdown-active character in a text that no backslash escapes, if any. */
export function unescapedActive(text: string): string | undefined {
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\\") {
      i++;
      continue;
    }
    if (ACTIVE.includes(text[i])) return text.slice(Math.max(0, i - 20), i + 20);
  }
  return undefined;
}

/**
 * The job summary: only the Action's own shapes of line (heading, totals,
 * reason, a table of nine cells, the rows-not-shown line), and no server text
 * that Markdown would turn into a link, image, HTML, code or emphasis.
 */
export function assertSummaryInert(summary: string): void {
  assert(summary.length < 1024 * 1024, "the summary stays under GitHub's 1 MiB a step");
  assert(!summary.includes("<"), "no HTML: < is always an entity");
  assert(!summary.includes("]("), "no Markdown link or image");
  assert(!/(?:https?|ftp):\/\//i.test(summary), "no URL GFM would autolink");
  assert(!/www\./i.test(summary), "no www. GFM would autolink");
  assert(!/[^\u200b]@/.test(summary), "no address or mention GFM would link");
  const lines = summary.split("\n");
  assertEquals(lines.filter((l) => l.startsWith("#")).length, 1, "one heading: the Action's");
  assertMatch(lines[0], /^### kuberollouttrigger: /);
  for (const [i, line] of lines.entries()) {
    const shown = JSON.stringify(line.slice(0, 200));
    if (i === 0 || line === "") continue;
    if (line.startsWith("| ")) {
      const cells = markdownCells(line);
      assertEquals(cells.length, 11, `a row of nine cells: ${shown}`);
      assertEquals([cells[0], cells[10]], ["", ""], `a row starts and ends with |: ${shown}`);
      for (const cell of cells) {
        const active = unescapedActive(cell);
        assertEquals(active, undefined, `every active character escaped: ${shown}`);
      }
      continue;
    }
    if (line === "|---|---|---|---|---|---|---|---|---|") continue;
    assertMatch(line, /^(Event |Reason: |… \d+ more rows not shown$)/, `a line of ours: ${shown}`);
    assertEquals(unescapedActive(line), undefined, `every active character escaped: ${shown}`);
  }
}

/** GITHUB_OUTPUT: at most the three documented outputs, once each, each of its grammar. */
export function assertOutputsValid(outputFile: string): Record<string, string> {
  const lines = outputFile.split("\n").filter((l) => l !== "");
  for (const line of lines) {
    assertMatch(line, /^(event-id|state|restarted)=[^<\r\n]*$/, "a name=value line of ours");
  }
  const outputs = parseOutputFile(outputFile);
  assertEquals(Object.keys(outputs).length, lines.length, "each output written once");
  if ("event-id" in outputs) {
    assertMatch(
      outputs["event-id"],
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  }
  if ("state" in outputs) {
    assert((OVERALL_STATES as readonly string[]).includes(outputs.state), `state ${outputs.state}`);
  }
  if ("restarted" in outputs) assertMatch(outputs.restarted, /^\d{1,15}$/);
  return outputs;
}
