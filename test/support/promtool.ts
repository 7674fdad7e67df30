import { spawnSync } from 'node:child_process';

/** promtool (Debian package `prometheus`) when on PATH; `.ci/run` installs it so these checks run in CI. */
export const hasPromtool = spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;

/** Runs `promtool check <what>` with `input` on stdin (metrics) or as a file argument (rules). */
export function promtool(args: string[], input?: string): { status: number | null; output: string } {
  const result = spawnSync('promtool', args, { input, encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}` };
}
