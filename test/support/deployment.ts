import { Replica } from './cluster';
import { eventually, startTestGateway, type TestGateway } from './gateway';
import { RedisProcess } from './redis';

/**
 * The same client-facing tests against both modes: embedded (one in-process app; every "replica" index is
 * that app) and cluster (real gateway processes on a throwaway redis-server).
 */
export interface Deployment {
  readonly mode: 'embedded' | 'cluster';
  /** ws:// URL of `path` on replica `i`. */
  ws(i: number, path: string): string;
  close(): Promise<void>;
}

export async function embeddedDeployment(env: Record<string, string> = {}): Promise<Deployment & { gateway: TestGateway }> {
  const gateway = await startTestGateway({ LOG_LEVEL: 'warn', ...env });
  return { mode: 'embedded', gateway, ws: (_i, path) => gateway.ws(path), close: () => gateway.close() };
}

export async function clusterDeployment(
  env: Record<string, string> = {},
  replicas = 2,
): Promise<Deployment & { redis: RedisProcess; replicas: Replica[] }> {
  const redis = await RedisProcess.start();
  const started = await Promise.all(Array.from({ length: replicas }, (_, i) => Replica.start(`node-${i}`, redis.url, env)));
  for (const replica of started) await eventually(async () => (await replica.readyStatus()) === 200, 10_000, `${replica.name} ready`);
  return {
    mode: 'cluster',
    redis,
    replicas: started,
    ws: (i, path) => started[i].ws(path),
    close: async () => {
      await Promise.all(started.map((r) => r.kill()));
      await redis.stop();
    },
  };
}
