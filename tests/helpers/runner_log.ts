/**
 * Reads a job log the way GitHub's runner reads a step's output for workflow
 * commands (actions/runner, ActionCommandManager and ActionCommand), so a
 * test can ask which commands a log would run:
 *
 * - Lines end at LF, CR or CRLF (.NET's StreamReader.ReadLine).
 * - `::name[ properties]::data`: a command when the line, leading white space
 *   trimmed, starts with `::` and has a second `::` (the "v2" form).
 * - `##[name[ properties]]data`: a command wherever `##[` occurs in the line,
 *   up to the next `]` (the legacy form); tried when the v2 form does not match.
 * - A name counts only when the runner knows it (case-insensitively).
 * - `stop-commands` with a token: from then on every command is ignored but
 *   the token itself, in either form, which resumes processing.
 *
 * What it returns are the commands the runner would process, which lines
 * were read while commands were stopped, and whether they were still stopped
 * when the log ended (which would disable commands for the job's later steps).
 */

/** The commands the runner registers (names compared case-insensitively). */
export const RUNNER_COMMANDS: ReadonlySet<string> = new Set([
  "add-mask",
  "add-matcher",
  "add-path",
  "debug",
  "echo",
  "endgroup",
  "error",
  "group",
  "internal-set-repo-path",
  "notice",
  "remove-matcher",
  "save-state",
  "set-env",
  "set-output",
  "stop-commands",
  "warning",
]);

/** One command as the runner parses it. */
export interface LogCommand {
  /** Index of the line in the log. */
  line: number;
  form: "::" | "##[";
  name: string;
  properties: string;
  /** The data, still escaped (%25, %0D, %0A) as it was printed. */
  data: string;
}

/** Splits a log into lines as .NET's ReadLine does. */
export function logLines(text: string): string[] {
  const lines = text.split(/\r\n|\r|\n/);
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/**
 * The command in one line, if `known` accepts its name; `() => true` finds
 * everything command-shaped, registered or not.
 */
export function commandIn(
  text: string,
  known: (name: string) => boolean,
  line = 0,
): LogCommand | undefined {
  const trimmed = text.trimStart();
  if (trimmed.startsWith("::")) {
    const end = trimmed.indexOf("::", 2);
    if (end >= 0) {
      const info = trimmed.slice(2, end);
      const space = info.indexOf(" ");
      const name = space < 0 ? info : info.slice(0, space);
      if (name !== "" && known(name)) {
        return {
          line,
          form: "::",
          name,
          properties: space < 0 ? "" : info.slice(space + 1),
          data: trimmed.slice(end + 2),
        };
      }
    }
  }
  const prefix = text.indexOf("##[");
  if (prefix >= 0) {
    const close = text.indexOf("]", prefix);
    if (close >= 0) {
      const info = text.slice(prefix + 3, close);
      const space = info.indexOf(" ");
      const name = space < 0 ? info : info.slice(0, space);
      if (name !== "" && known(name)) {
        return {
          line,
          form: "##[",
          name,
          properties: space < 0 ? "" : info.slice(space + 1),
          data: text.slice(close + 1),
        };
      }
    }
  }
  return undefined;
}

/** What the runner would make of a log. */
export interface RunnerReading {
  lines: string[];
  /** Commands processed, stop-commands and each resume included. */
  processed: LogCommand[];
  /** Indexes of the lines read while commands were stopped (the stop and resume lines excluded). */
  stoppedLines: Set<number>;
  /** Commands were stopped when the log ended. */
  stoppedAtEnd: boolean;
}

/** Reads a log line by line, honouring stop-commands and its resume token. */
export function readRunnerLog(text: string): RunnerReading {
  const lines = logLines(text);
  const processed: LogCommand[] = [];
  const stoppedLines = new Set<number>();
  let stopToken: string | undefined;
  const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
  for (const [i, line] of lines.entries()) {
    const known = (name: string) =>
      RUNNER_COMMANDS.has(name.toLowerCase()) ||
      (stopToken !== undefined && same(name, stopToken));
    const command = commandIn(line, known, i);
    if (stopToken !== undefined) {
      if (command && same(command.name, stopToken)) {
        processed.push(command);
        stopToken = undefined;
      } else {
        stoppedLines.add(i);
      }
      continue;
    }
    if (!command) continue;
    processed.push(command);
    if (same(command.name, "stop-commands")) stopToken = command.data;
  }
  return { lines, processed, stoppedLines, stoppedAtEnd: stopToken !== undefined };
}

/** Decodes a command's data as the runner does. */
export function commandData(data: string): string {
  return data.replace(/%0D/g, "\r").replace(/%0A/g, "\n").replace(/%25/g, "%");
}
