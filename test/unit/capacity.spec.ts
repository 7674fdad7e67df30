import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// docs/scaling.md's tables are bench/capacity.js's output for the recorded bench run: a doc edited by hand, or a
// model changed without recomputing the doc, fails here.
/* eslint-disable @typescript-eslint/no-require-imports */
const capacity = require('../../bench/capacity') as {
  table(run: unknown): string;
  costs(run: unknown): Record<string, unknown>;
  plan(costs: unknown, workload: unknown, n: number): { replicas: number; redisCores: number; topo: string; masters: number };
  WORKLOADS: { name: string }[];
};

const ROOT = join(__dirname, '..', '..');
const run = JSON.parse(readFileSync(join(ROOT, 'docs', 'bench-results.json'), 'utf8'));

describe('capacity model (docs/scaling.md)', () => {
  it('holds exactly what the script computes from the recorded bench run', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'scaling.md'), 'utf8');
    const recorded = /<!-- capacity:start -->\n([\s\S]*)\n<!-- capacity:end -->/.exec(doc)?.[1];
    expect(recorded).toBe(capacity.table(run));
  });

  it('never plans fewer replicas or less Redis for more connections', () => {
    const costs = capacity.costs(run);
    for (const workload of capacity.WORKLOADS) {
      let previous = { replicas: 0, redisCores: 0 };
      for (const n of [10_000, 100_000, 1_000_000, 10_000_000]) {
        const p = capacity.plan(costs, workload, n);
        expect(p.replicas).toBeGreaterThanOrEqual(previous.replicas);
        expect(p.redisCores).toBeGreaterThanOrEqual(previous.redisCores);
        if (p.topo === 'cluster') expect(p.masters).toBeGreaterThanOrEqual(3);
        previous = p;
      }
    }
  });

  it('says what to do when there are no figures to compute from', () => {
    const missing = spawnSync(process.execPath, [join(ROOT, 'bench', 'capacity.js'), join(ROOT, 'no-such-run.json')], { encoding: 'utf8' });
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*no-such-run\.json.*run `npm run bench` first/);
    const old = spawnSync(process.execPath, [join(ROOT, 'bench', 'capacity.js'), join(ROOT, 'package.json')], { encoding: 'utf8' });
    expect(old.status).toBe(2);
    expect(old.stderr).toMatch(/no Redis topology figures/);
  });
});
