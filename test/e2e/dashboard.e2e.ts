import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load as parseYaml } from 'js-yaml';
import { connect, refusal } from '../support/clients';
import { Replica } from '../support/cluster';
import { eventually } from '../support/gateway';
import { freePort, ROOT } from '../support/process';
import { RedisProcess } from '../support/redis';
import { token } from '../support/tokens';

jest.setTimeout(90_000);

// The Grafana dashboard and the alerting rules, run against a real Prometheus (Debian's `prometheus`) that
// scrapes two replicas under a little load: every query must run, and no panel may be empty while its metric
// has data.

const DASHBOARD = join(ROOT, 'helm', 'realtime-gateway', 'dashboards', 'realtime-gateway.json');
/** What Grafana substitutes in the queries. */
const grafana = (expr: string) => expr.replaceAll('$job', 'realtime-gateway').replaceAll('$__rate_interval', '30s');

interface Answer {
  status: string;
  error?: string;
  data?: { result: unknown[] };
}

describe('the Grafana dashboard and the alerting rules against a real Prometheus', () => {
  let redis: RedisProcess;
  let replicas: Replica[];
  let prometheus: ChildProcess;
  let api: string;
  const query = async (expr: string): Promise<Answer> => (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as Answer;

  beforeAll(async () => {
    redis = await RedisProcess.start();
    replicas = await Promise.all(['dash-a', 'dash-b'].map((name) => Replica.start(name, redis.url)));
    for (const r of replicas) await eventually(async () => (await r.readyStatus()) === 200, 10_000, `${r.name} ready`);
    const dir = mkdtempSync(join(tmpdir(), 'rg-prometheus-'));
    const port = await freePort();
    const targets = replicas.map((r) => `'127.0.0.1:${r.process.internalPort}'`).join(', ');
    writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: realtime-gateway\n    static_configs:\n      - targets: [${targets}]\n`);
    prometheus = spawn('prometheus', [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], { stdio: 'ignore' });
    api = `http://127.0.0.1:${port}`;
    await eventually(async () => (await fetch(`${api}/-/ready`).then((r) => r.status, () => 0)) === 200, 20_000, 'Prometheus ready');
  });
  afterAll(async () => {
    prometheus?.kill('SIGKILL');
    await Promise.all((replicas ?? []).map((r) => r.kill()));
    await redis?.stop();
  });

  it('runs every panel query and every alert rule; no panel is empty while its metric has data', async () => {
    // A little of everything: connections on both replicas, alerts, chat frames, a refused upgrade, closes,
    // a bad frame and a bad bus message.
    const [a, b] = replicas;
    const clients = await Promise.all([a, b, a, b].map((r, i) => connect(r.ws(`/api/alerts/subscribe?token=${token({ sub: `u${i}`, role: 'authority' })}`))));
    const chat = await connect(b.ws(`/ws/chat/dash?token=${token({ sub: 'talker', role: 'patient' })}`));
    await chat.ofType('welcome');
    for (let n = 0; n < 5; n++) expect((await a.publish({ data: { n } })).status).toBe(202);
    chat.send({ type: 'message', message: 'hello' });
    chat.send('not json');
    await chat.ofType('error');
    expect((await refusal(a.ws('/api/alerts/subscribe?token=forged'))).status).toBe(401);
    await redis.command('PUBLISH rt:alerts not-json');
    await clients[0].close();

    // Prometheus has scraped both replicas a few times since.
    await eventually(async () => {
      const up = await query('count_over_time(up{job="realtime-gateway"}[10s])');
      return (up.data?.result as { value: [number, string] }[] | undefined)?.filter((s) => Number(s.value[1]) >= 3).length === 2;
    }, 20_000, 'three scrapes of both replicas');

    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets: { expr: string }[] }[] };
    const problems: string[] = [];
    // Every metric a panel names is one the replicas expose (a typo would give a panel that is always empty).
    const known = new Set(((await (await fetch(`${api}/api/v1/label/__name__/values`)).json()) as { data: string[] }).data);
    for (const panel of dashboard.panels) {
      for (const metric of new Set(panel.targets.flatMap((t) => t.expr.match(/\b[a-z_]+(?=\{)/g) ?? []))) {
        if (!known.has(metric)) problems.push(`${panel.title}: no metric ${metric} was scraped`);
      }
    }
    for (const panel of dashboard.panels) {
      for (const target of panel.targets) {
        const expr = grafana(target.expr);
        const answer = await query(expr);
        if (answer.status !== 'success') {
          problems.push(`${panel.title}: ${answer.error}`);
          continue;
        }
        if (answer.data!.result.length > 0) continue;
        // Empty: fine only if no metric it reads has data yet.
        for (const metric of new Set(expr.match(/\b[a-z_]+(?=\{)/g))) {
          const series = await query(`count(${metric}{job="realtime-gateway"})`);
          if ((series.data?.result.length ?? 0) > 0) problems.push(`${panel.title}: empty although ${metric} has data (${expr})`);
        }
      }
    }
    const rules = parseYaml(readFileSync(join(ROOT, 'docs', 'alerts.yml'), 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] };
    for (const rule of rules.groups.flatMap((g) => g.rules)) {
      const answer = await query(rule.expr);
      if (answer.status !== 'success') problems.push(`alert ${rule.alert}: ${answer.error}`);
    }
    expect(problems).toEqual([]);
    // The panels that this load must fill are filled (the check above cannot pass by everything being empty).
    for (const needle of ['ws_connections_active', 'ws_upgrades_rejected_total', 'ws_delivery_seconds_bucket', 'ws_bus_invalid_total', 'ws_redis_up']) {
      const expr = grafana(dashboard.panels.flatMap((p) => p.targets).find((t) => t.expr.includes(needle))!.expr);
      expect([needle, (await query(expr)).data!.result.length > 0]).toEqual([needle, true]);
    }
    await Promise.all([...clients.slice(1).map((c) => c.close()), chat.close()]);
  });

  it('has a panel for each area an operator watches (the chart ships it: test/unit/helm-render.spec.ts)', () => {
    const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string }[] };
    expect(dashboard.panels.map((p) => p.title)).toEqual(
      expect.arrayContaining(['Open connections', 'Refused upgrades / s by reason', 'Closes / s by code', 'Delivery latency (publish to socket write)', 'Redis reachable (per replica)', 'Event-loop lag p99', 'Resident memory']),
    );
  });
});
