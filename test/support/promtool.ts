import { spawnSync } from 'node:child_process';

/**
 * Runs `promtool check <what>` with `input` on stdin (metrics) or as a file argument (rules). promtool comes
 * from Debian's `prometheus` package, which `.ci/run` installs; without it the test fails, never skips.
 */
export function promtool(args: string[], input?: string): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { input, encoding: 'utf8' });
  if (result.error) throw new Error(`promtool could not run (${result.error.message}): install Debian's prometheus package (.ci/run does)`);
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}
