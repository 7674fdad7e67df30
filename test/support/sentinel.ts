import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisProcess } from './redis';

const NAME = 'rtmaster';

/** Polls `check` (a Redis state with no event to await from here) until it holds, failing after `ms`. */
async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * A Sentinel group on free ports: one master, one replica and three sentinels (quorum 2), with a fast failure
 * detection (1 s) so a failover takes a few seconds. `failover()` kills the master with SIGKILL and resolves
 * once the sentinels name the replica as the new master.
 */
export class SentinelGroup {
  private constructor(
    public master: RedisProcess,
    public replica: RedisProcess,
    readonly sentinels: RedisProcess[],
  ) {}

  static async start(): Promise<SentinelGroup> {
    const master = await RedisProcess.start();
    const replica = await RedisProcess.start(() => ['--replicaof', '127.0.0.1', String(master.port)]);
    await until(async () => /master_link_status:up/.test(await replica.command('INFO replication')), 10_000, 'the replica to sync');
    const dir = mkdtempSync(join(tmpdir(), 'rg-sentinel-'));
    const sentinels: RedisProcess[] = [];
    for (let i = 0; i < 3; i++) {
      sentinels.push(
        await RedisProcess.start((port) => {
          const file = join(dir, `sentinel-${port}.conf`);
          writeFileSync(
            file,
            [
              `dir ${dir}`,
              `sentinel monitor ${NAME} 127.0.0.1 ${master.port} 2`,
              `sentinel down-after-milliseconds ${NAME} 1000`,
              `sentinel failover-timeout ${NAME} 3000`,
              `sentinel parallel-syncs ${NAME} 1`,
              '',
            ].join('\n'),
          );
          return [file, '--sentinel'];
        }),
      );
    }
    const group = new SentinelGroup(master, replica, sentinels);
    // Every sentinel must know the replica and the other sentinels before a failover can be agreed.
    await until(async () => {
      const infos = await Promise.all(sentinels.map((s) => s.command('INFO sentinel')));
      return infos.every((info) => new RegExp(`name=${NAME},status=ok,address=127.0.0.1:${master.port},slaves=1,sentinels=3`).test(info));
    }, 20_000, 'the sentinels to see the replica and each other');
    return group;
  }

  get url(): string {
    return `redis+sentinel://${this.sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${NAME}`;
  }

  /** The master's port as the first sentinel reports it. */
  async masterPort(): Promise<number> {
    const reply = await this.sentinels[0].command(`SENTINEL get-master-addr-by-name ${NAME}`);
    return Number(reply.split('\r\n')[4]);
  }

  /** SIGKILLs the master; resolves once the sentinels have promoted the replica. */
  async failover(): Promise<void> {
    const old = this.master;
    await old.kill();
    await until(async () => (await this.masterPort()) === this.replica.port, 30_000, 'the sentinels to promote the replica');
    [this.master, this.replica] = [this.replica, old];
  }

  async stop(): Promise<void> {
    await Promise.all([...this.sentinels, this.master, this.replica].map((p) => p.kill()));
  }
}
