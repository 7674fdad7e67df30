import { metricValue } from './gateway';
import { spawnGateway, type GatewayProcess } from './process';
import { TEST_SECRET, token } from './tokens';

/** One replica: a real `node dist/main.js` process in cluster mode, and what tests do with it. */
export class Replica {
  private constructor(
    readonly name: string,
    readonly process: GatewayProcess,
  ) {}

  /** Starts NODE_ID=`name` on a free port against `redisUrl`. */
  static async start(name: string, redisUrl: string, env: Record<string, string> = {}, options: Parameters<typeof spawnGateway>[1] = {}): Promise<Replica> {
    const gw = await spawnGateway({ JWT_SECRET: TEST_SECRET, REDIS_URL: redisUrl, NODE_ID: name, LOG_LEVEL: 'debug', ...env }, options);
    return new Replica(name, gw);
  }

  ws(path: string): string {
    return `ws://127.0.0.1:${this.process.port}${path}`;
  }

  /** On the public port (WebSocket paths, health). */
  http(path: string): string {
    return `http://127.0.0.1:${this.process.port}${path}`;
  }

  /** On the internal port (metrics, server API). */
  internal(path: string): string {
    return `http://127.0.0.1:${this.process.internalPort}${path}`;
  }

  async metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
    return metricValue(await (await fetch(this.internal('/metrics'))).text(), name, labels);
  }

  async readyStatus(): Promise<number> {
    return (await fetch(this.http('/readyz'))).status;
  }

  /** POST /api/alerts as a service; resolves with the status and body. */
  async publish(body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(this.internal('/api/alerts'), {
      method: 'POST',
      headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }

  /** Parsed JSON log lines that match `fields`. */
  logs(fields: Record<string, unknown>): Record<string, unknown>[] {
    return this.process.stdout
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((entry) => Object.entries(fields).every(([k, v]) => entry[k] === v));
  }

  kill(): Promise<number | null> {
    this.process.child.kill('SIGKILL');
    return this.process.exited;
  }

  stop(): Promise<number | null> {
    if (this.process.child.exitCode === null && this.process.child.signalCode === null) this.process.child.kill('SIGTERM');
    return this.process.exited;
  }
}
