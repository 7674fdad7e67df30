import type { DynamicModule, Type } from '@nestjs/common';
import pino from 'pino';
import { startGateway, type RunningGateway } from '../../src/app';
import { loadConfig, type AppConfig } from '../../src/config/config';
import { TEST_SECRET } from './tokens';

export interface TestGateway extends RunningGateway {
  config: AppConfig;
  /** Every JSON log line written so far, parsed. */
  logs: Record<string, unknown>[];
  /** Every log line as written, for "the token never appears" checks. */
  rawLogs: string[];
  ws(path: string): string;
  /** A URL on the public port (WebSocket paths, /healthz, /readyz). */
  http(path: string): string;
  /** A URL on the internal port (metrics, server API, /admin, /demo). */
  internal(path: string): string;
  metrics(): Promise<string>;
  /** Value of one series in /metrics, e.g. ('ws_closes_total', {gateway:'alerts', code:'1000'}). */
  metric(name: string, labels?: Record<string, string>): Promise<number | undefined>;
}

/** Starts the real app in this process on a free port, with logs captured. */
export async function startTestGateway(
  env: Record<string, string> = {},
  options: { imports?: (Type | DynamicModule)[] } = {},
): Promise<TestGateway> {
  // PRESENCE_GRACE_MS 0 unless a test asks for a grace: leaves are told at once, as the suite's timings expect.
  const { config } = loadConfig({ PORT: '0', HOST: '127.0.0.1', INTERNAL_PORT: '0', INTERNAL_HOST: '127.0.0.1', JWT_SECRET: TEST_SECRET, LOG_LEVEL: 'debug', PRESENCE_GRACE_MS: '0', ...env });
  const rawLogs: string[] = [];
  const logs: Record<string, unknown>[] = [];
  const sink = {
    write(line: string) {
      rawLogs.push(line);
      logs.push(JSON.parse(line));
    },
  };
  const log = pino({ level: config.logLevel, base: { node: config.nodeId } }, sink);
  const running = await startGateway(config, log, options);
  const base = `127.0.0.1:${running.port}`;
  const internalBase = `127.0.0.1:${running.internalPort}`;
  const gateway: TestGateway = {
    ...running,
    config,
    logs,
    rawLogs,
    ws: (path) => `ws://${base}${path}`,
    http: (path) => `http://${base}${path}`,
    internal: (path) => `http://${internalBase}${path}`,
    metrics: async () => (await fetch(`http://${internalBase}/metrics`)).text(),
    metric: async (name, labels = {}) => metricValue(await gateway.metrics(), name, labels),
  };
  return gateway;
}

/** Value of one series in a Prometheus exposition, or undefined when absent. */
export function metricValue(exposition: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const ok = Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`));
    if (ok) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** Polls `check` until it holds (for server-side state that has no event to await), failing after `ms`. */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
