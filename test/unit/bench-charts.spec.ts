import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

// The charts in docs/ (linked from the README and docs/benchmarks.md) are what the recorded figures render to: a
// run recorded without regenerating them, or a chart edited by hand, fails here.
const ROOT = join(__dirname, '..', '..');
const DOCS = join(ROOT, 'docs');
const CHARTS = ['chart-memory.svg', 'chart-fanout.svg', 'chart-latency.svg'];

interface IdleRound { rssPerConn: number }
interface Results {
  idle: { sockets: number; ws: IdleRound[]; gateway: IdleRound[]; socketio: IdleRound[] };
  fanout: Record<string, Record<string, number[]>>;
  latency: { peer: string; rate: number; p99: number }[];
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
/** The <title> texts of the bars of a chart. */
const titles = (svg: string) => [...svg.matchAll(/<rect [^>]*><title>([^<]*)<\/title><\/rect>/g)].map((m) => m[1]);

describe('benchmark charts (bench/charts.js)', () => {
  const results = JSON.parse(readFileSync(join(DOCS, 'bench-results.json'), 'utf8')) as Results;
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'rt-charts-'));
    execFileSync(process.execPath, [join(ROOT, 'bench', 'charts.js'), join(DOCS, 'bench-results.json'), '--out', dir]);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(CHARTS)('docs/%s is what docs/bench-results.json renders to', (name) => {
    expect(readFileSync(join(DOCS, name), 'utf8')).toBe(readFileSync(join(dir, name), 'utf8'));
  });

  it("states the recorded figures in the bars' titles", () => {
    const memory = titles(readFileSync(join(DOCS, 'chart-memory.svg'), 'utf8'));
    const rss = (median(results.idle.gateway.map((r) => r.rssPerConn)) / 1024).toFixed(2);
    expect(memory).toContain(`G, idle RSS ${results.idle.sockets.toLocaleString('en')} sockets: ${rss} KB`);

    const fanout = titles(readFileSync(join(DOCS, 'chart-fanout.svg'), 'utf8'));
    const single = Math.round(median(results.fanout['single/1000'].gateway)).toLocaleString('en');
    expect(fanout).toContain(`G, single broadcasts 1,000 subscribers: ${single} deliveries per CPU-second`);

    const latency = titles(readFileSync(join(DOCS, 'chart-latency.svg'), 'utf8'));
    const p99 = median(results.latency.filter((l) => l.peer === 'socketio' && l.rate === 1000).map((l) => l.p99)).toFixed(2);
    expect(latency).toContain(`S, p99 1,000/s: ${p99} ms`);
  });
});
