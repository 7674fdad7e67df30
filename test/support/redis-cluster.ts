import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RedisProcess } from './redis';

async function until(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(output) : reject(new Error(`${command} ${args.join(' ')} exited with ${code}: ${output}`))));
  });
}

/**
 * A Redis Cluster on free ports: 3 masters and 3 replicas (`redis-server --cluster-enabled yes`, then
 * `redis-cli --cluster create --cluster-replicas 1`), resolved once every node reports cluster_state:ok.
 */
export class RedisClusterProcesses {
  private constructor(readonly nodes: RedisProcess[]) {}

  static async start(): Promise<RedisClusterProcesses> {
    const dir = mkdtempSync(join(tmpdir(), 'rg-cluster-'));
    const nodes: RedisProcess[] = [];
    for (let i = 0; i < 6; i++) {
      nodes.push(
        await RedisProcess.start((port) => [
          '--cluster-enabled', 'yes',
          '--cluster-config-file', join(dir, `nodes-${port}.conf`),
          '--cluster-node-timeout', '2000',
          // Replicas sync at once (the default waits 5 s for more replicas): a master killed before its replica
          // has synced is not failed over (cluster-replica-validity-factor), which is right, but not what a
          // test of a failover wants.
          '--repl-diskless-sync-delay', '0',
          '--dir', dir,
        ]),
      );
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '1', '--cluster-yes']);
    await until(async () => (await Promise.all(nodes.map((n) => n.command('CLUSTER INFO')))).every((info) => info.includes('cluster_state:ok')), 20_000, 'cluster_state:ok on every node');
    await until(async () => {
      const roles = await Promise.all(nodes.map((n) => n.command('INFO replication')));
      const replicas = roles.filter((r) => r.includes('role:slave'));
      return replicas.length === 3 && replicas.every((r) => r.includes('master_link_status:up'));
    }, 20_000, 'every replica in sync with its master');
    return new RedisClusterProcesses(nodes);
  }

  /** `redis+cluster://` with every node as a seed. */
  get url(): string {
    return `redis+cluster://${this.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`;
  }

  /**
   * SIGKILLs the master that owns `key`'s slot and resolves once a replica has taken the slot over
   * (cluster_state:ok again on the survivors).
   */
  async killMasterOf(key: string): Promise<void> {
    const live = this.nodes.filter((n) => n.running);
    const slot = Number((await live[0].command(`CLUSTER KEYSLOT ${key}`)).slice(1));
    const shards = await live[0].command('CLUSTER NODES');
    const owner = shards
      .split('\n')
      .map((line) => line.split(' '))
      .find((f) => f[2]?.includes('master') && f.slice(8).some((range) => {
        const [from, to = from] = range.split('-').map(Number);
        return slot >= from && slot <= to;
      }));
    const port = Number(owner![1].split(':')[1].split('@')[0]);
    const victim = this.nodes.find((n) => n.port === port)!;
    await victim.kill();
    const survivors = this.nodes.filter((n) => n.running);
    // Done when a surviving master serves the slot and every survivor says cluster_state:ok.
    await until(async () => {
      const infos = await Promise.all(survivors.map((n) => n.command('CLUSTER INFO')));
      if (!infos.every((info) => info.includes('cluster_state:ok'))) return false;
      const map = (await survivors[0].command('CLUSTER NODES')).split('\n').map((line) => line.split(' '));
      return map.some((f) => f[2]?.includes('master') && !f[2].includes('fail') && !f[1]?.includes(`:${port}@`) && f.slice(8).some((range) => {
        const [from, to = from] = range.split('-').map(Number);
        return slot >= from && slot <= to;
      }));
    }, 30_000, 'a replica to take over the slot');
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.kill()));
  }
}
