import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from '../support/clients';
import { ROOT } from '../support/process';

jest.setTimeout(60_000);

// `npm run cluster` (scripts/local-cluster.js): what it prints works when pasted, and Ctrl-C stops it all.
describe('npm run cluster', () => {
  it('starts Redis, two replicas and HAProxy, prints commands that work, and stops everything on SIGINT', async () => {
    const child = spawn(process.execPath, [join(ROOT, 'scripts', 'local-cluster.js'), '--replicas=2'], { cwd: ROOT, env: { PATH: process.env.PATH, HOME: process.env.HOME }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout!.on('data', (chunk) => (out += chunk));
    child.stderr!.on('data', (chunk) => (err += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout!.on('data', () => out.includes('Ctrl-C stops everything') && resolve());
        void exited.then((code) => reject(new Error(`exited with ${code} before it was ready: ${out}`)));
      });
      expect(out).toMatch(/2 replicas on redis:\/\/127\.0\.0\.1:\d+\/0, HAProxy on :\d+/);
      // The subscribe line, as wscat would take it, and the publish line, run by a shell as printed.
      const url = /npx --yes wscat -c "([^"]+)"/.exec(out)![1];
      expect(url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+\/api\/alerts\/subscribe\?token=/);
      const subscriber = await connect(url);
      await subscriber.ofType('welcome');
      const publish = /^ {2}(curl -sS .*)$/m.exec(out)![1];
      const answer = JSON.parse(execFileSync('sh', ['-c', publish], { encoding: 'utf8' })) as { id: string };
      expect(await subscriber.ofType('alert')).toMatchObject({ id: answer.id, data: { text: 'hello' } });
      const admin = /(http:\/\/127\.0\.0\.1:\d+\/admin)/.exec(out)![1];
      expect((await fetch(admin)).status).toBe(200);
      // HAProxy's own lines go to a log file the banner names, not into the terminal.
      const log = /HAProxy's log: (\S+)/.exec(out)![1];
      expect(existsSync(log)).toBe(true);
      // Ctrl-C: the replicas drain first (the subscriber is told 1012 through HAProxy), then the rest stops.
      child.kill('SIGINT');
      expect((await subscriber.closed).code).toBe(1012);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(0);
    // The replicas going DOWN as they drain is HAProxy's [WARNING]; the terminal shows only the script's own lines.
    expect(err.split('\n').filter((line) => line.trim() && !line.startsWith('cluster: '))).toEqual([]);
    // Nothing it started is left: its replicas' ports refuse.
    const ports = [...out.matchAll(/public http:\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1]));
    expect(ports).toHaveLength(2);
    for (const port of ports) await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});
