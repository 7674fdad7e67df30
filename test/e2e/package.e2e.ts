import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort, ROOT } from '../support/process';
import { RedisProcess } from '../support/redis';
import { eventually } from '../support/gateway';

// npm pack and an npm install of the tarball's dependencies (from the npm cache when warm, else the registry):
// 40-90 s on a loaded 2-core machine.
jest.setTimeout(300_000);

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** A clean environment: none of the npm_* variables `npm test` sets, which would point npm at this repository. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: process.env.HOME, ...(process.env.TMPDIR ? { TMPDIR: process.env.TMPDIR } : {}), ...extra };
}

function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (status) => resolve({ status, stdout, stderr }));
  });
}

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}

async function pack(args: string[]): Promise<PackResult> {
  const packed = await run('npm', ['pack', '--json', ...args], ROOT);
  expect([packed.status, packed.stderr]).toEqual([0, expect.any(String)]);
  // prepack may print to stdout before the JSON array (the build, when dist/ is stale, writes to stderr only).
  return (JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as PackResult[])[0];
}

describe('the npm package (npm pack)', () => {
  it('holds only what runs: dist without tests, sources, maps or build info; README, LICENSE and the user docs', async () => {
    const result = await pack(['--dry-run']);
    const paths = result.files.map((file) => file.path);
    // Before: 568 files, 649 kB packed (tests, benches, sources, a 171 kB tsbuildinfo, dump.rdb).
    // Now 178 files, 364 kB packed, 1.25 MB unpacked; the limits leave room to grow by about a fifth to a quarter.
    expect(result.entryCount).toBeLessThanOrEqual(230);
    expect(result.size).toBeLessThanOrEqual(450_000);
    expect(result.unpackedSize).toBeLessThanOrEqual(1_500_000);
    for (const path of ['package.json', 'README.md', 'LICENSE', 'dist/main.js', 'dist/cli/realtime-gateway.js', 'dist/client/index.js', 'dist/client/index.d.ts', 'docs/deploy.md', 'docs/protocol.md']) {
      expect(paths).toContain(path);
    }
    const unexpected = paths.filter(
      (path) =>
        !/^(package\.json|README\.md|LICENSE|docs\/[^/]+\.md|docs\/alerts\.yml|docs\/examples\/[^/]+|dist\/.+\.js|dist\/client\/[^/]+\.d\.ts)$/.test(path) ||
        /^(test|bench|src|helm|scripts|coverage|node_modules)\//.test(path) ||
        /dump\.rdb|tsbuildinfo|build-stamp|\.map$|\.env/.test(path),
    );
    expect(unexpected).toEqual([]);
  });
});

describe('the packed tarball installed into a scratch project', () => {
  const SECRET = 'package-e2e-secret-package-e2e-secret-0123';
  let scratch: string;
  let packDir: string;

  beforeAll(async () => {
    packDir = mkdtempSync(join(tmpdir(), 'rg-pack-'));
    const result = await pack(['--pack-destination', packDir]);
    scratch = mkdtempSync(join(tmpdir(), 'rg-scratch-'));
    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', version: '1.0.0', private: true }));
    const installed = await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', join(packDir, result.filename)], scratch);
    expect([installed.status, installed.stderr]).toEqual([0, expect.any(String)]);
  });

  afterAll(() => {
    for (const dir of [scratch, packDir]) if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // `npx --no`: the installed bin or a failure, never a download of some other package of the same name.
  const npx = (args: string[], env: Record<string, string> = {}) => run('npx', ['--no', 'realtime-gateway', ...args], scratch, env);

  it('npx realtime-gateway token --role service prints a token signed with JWT_SECRET', async () => {
    const result = await npx(['token', '--role', 'service'], { JWT_SECRET: SECRET });
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+\n$/);
    const claims = JSON.parse(Buffer.from(result.stdout.split('.')[1], 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ role: 'service' });
    // Without a role: what to type, in the installed command's own words.
    const bare = await npx(['token']);
    expect([bare.status, bare.stdout]).toEqual([2, '']);
    expect(bare.stderr).toContain('token: --role is required');
    expect(bare.stderr).toContain('Usage: realtime-gateway token --role <role>');
  });

  it('npx realtime-gateway doctor --help and a bare npx realtime-gateway print their usage', async () => {
    const help = await npx(['doctor', '--help']);
    expect([help.status, help.stdout]).toEqual([0, expect.stringContaining('Usage: realtime-gateway doctor <ws-url>')]);
    const bare = await npx([]);
    expect([bare.status, bare.stdout]).toEqual([0, expect.stringMatching(/doctor[\s\S]*token[\s\S]*vapid[\s\S]*start/)]);
  });

  it('npx realtime-gateway vapid prints a P-256 key pair', async () => {
    const result = await npx(['vapid']);
    expect(result.status).toBe(0);
    const publicKey = /^VAPID_PUBLIC_KEY=([\w-]+)$/m.exec(result.stdout)?.[1];
    const privateKey = /^VAPID_PRIVATE_KEY=([\w-]+)$/m.exec(result.stdout)?.[1];
    expect(Buffer.from(publicKey!, 'base64url')).toHaveLength(65);
    expect(Buffer.from(privateKey!, 'base64url')).toHaveLength(32);
  });

  it('npx realtime-gateway start serves: ready, publishes with a token from the CLI, the SDK bundle for the pages', async () => {
    const [port, internalPort] = [await freePort(), await freePort()];
    const env = { JWT_SECRET: SECRET, HOST: '127.0.0.1', PORT: String(port), INTERNAL_HOST: '127.0.0.1', INTERNAL_PORT: String(internalPort) };
    // detached: npx and node form one process group, stopped together.
    const child = spawn('npx', ['--no', 'realtime-gateway', 'start'], { cwd: scratch, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let output = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('"event":"listening"')) resolve();
        });
        child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
        void exited.then((code) => reject(new Error(`exited with ${code} before listening: ${output}`)));
      });
      expect((await fetch(`http://127.0.0.1:${port}/readyz`)).status).toBe(200);
      const service = (await npx(['token', '--role', 'service'], { JWT_SECRET: SECRET })).stdout.trim();
      const published = await fetch(`http://127.0.0.1:${internalPort}/api/alerts`, {
        method: 'POST',
        headers: { authorization: `Bearer ${service}`, 'content-type': 'application/json' },
        body: JSON.stringify({ data: { text: 'from the installed package' } }),
      });
      expect(published.status).toBe(202);
      // The pages' SDK bundle is built from the installed realtime-gateway/client (a self-reference).
      const bundle = await fetch(`http://127.0.0.1:${internalPort}/admin/client.js`);
      expect([bundle.status, await bundle.text()]).toEqual([200, expect.stringContaining('window.RealtimeGateway')]);
    } finally {
      process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
  });

  it("require('realtime-gateway/client') and import from it work in the scratch project", async () => {
    const cjs = await run(process.execPath, ['-e', "process.stdout.write(typeof require('realtime-gateway/client').RealtimeClient)"], scratch);
    expect([cjs.status, cjs.stdout]).toEqual([0, 'function']);
    const esm = await run(process.execPath, ['--input-type=module', '-e', "import { RealtimeClient } from 'realtime-gateway/client'; process.stdout.write(typeof RealtimeClient)"], scratch);
    expect([esm.status, esm.stdout]).toEqual([0, 'function']);
  });
});

describe('dump.rdb', () => {
  // A replica's full sync stores the master's snapshot as dump.rdb in its working directory (repl-diskless-load
  // is off by default), even with --save ''. The test Sentinel group's replica ran with the repository as its
  // working directory and left a 172-byte dump.rdb there, which was committed.
  it('a throwaway replica keeps its synced snapshot out of the working tree', async () => {
    const rootDump = join(ROOT, 'dump.rdb');
    const before = existsSync(rootDump) ? statSync(rootDump).mtimeMs : undefined;
    const master = await RedisProcess.start();
    const replica = await RedisProcess.start(() => ['--replicaof', '127.0.0.1', String(master.port)]);
    try {
      await eventually(async () => /master_link_status:up/.test(await replica.command('INFO replication')), 10_000, 'the replica to sync');
      const dir = (await replica.command('CONFIG GET dir')).split('\r\n')[4];
      expect(dir).not.toBe(ROOT);
      // The snapshot was written, in the replica's own directory.
      expect(readdirSync(dir)).toContain('dump.rdb');
      expect(existsSync(rootDump) ? statSync(rootDump).mtimeMs : undefined).toBe(before);
    } finally {
      await replica.stop();
      await master.stop();
    }
  });
});

describe('npm start, token, doctor, vapid and cluster build dist/ only when it is stale (scripts/build-if-stale.js)', () => {
  it('a second npm run token compiles nothing and prints only the token', async () => {
    // Whatever state this repository's dist/ is in, make it current first (what pretest does).
    expect((await run(process.execPath, [join(ROOT, 'scripts', 'build-if-stale.js')], ROOT)).status).toBe(0);
    const times = () => Object.fromEntries(readdirSync(join(ROOT, 'dist'), { recursive: true, encoding: 'utf8' }).map((file) => [file, statSync(join(ROOT, 'dist', file)).mtimeMs]));
    const before = times();
    const result = await run('npm', ['run', '--silent', 'token', '--', '--role', 'service'], ROOT);
    expect([result.status, result.stdout]).toEqual([0, expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+\n$/)]);
    expect(result.stderr).not.toContain('Building');
    expect(times()).toEqual(before);
  });
});

describe('scripts/build-if-stale.js on a small project of the same layout', () => {
  // The script, tsconfigs and package.json of this repository around three small sources (node_modules
  // linked): the same decisions as on the real src/, whose rebuilds take 1.5-3 minutes on a loaded 2-core machine.
  let copy: string;
  const script = () => join(copy, 'scripts', 'build-if-stale.js');
  const buildIfStale = () => run(process.execPath, [script()], copy);
  /** Modification times of every file in the copy's dist/, to tell whether anything was written. */
  const distTimes = () => Object.fromEntries(readdirSync(join(copy, 'dist'), { recursive: true, encoding: 'utf8' }).map((file) => [file, statSync(join(copy, 'dist', file)).mtimeMs]));
  const SOURCES: Record<string, string> = {
    'cli/realtime-gateway.ts': "process.stdout.write('start  run the service (same as npm start)\\n');\n",
    'cli/token.ts': "import { sign } from './sign';\nprocess.stdout.write(`${sign('service')}\\n`);\n",
    'cli/sign.ts': "export function sign(role: string): string {\n  return `header.${Buffer.from(role).toString('base64url')}.signature`;\n}\n",
    'cli/vapid.ts': "process.stdout.write('VAPID_PUBLIC_KEY=x\\n');\n",
  };

  beforeAll(async () => {
    copy = mkdtempSync(join(tmpdir(), 'rg-build-'));
    for (const path of ['scripts/build-if-stale.js', 'tsconfig.json', 'tsconfig.build.json', 'package.json']) cpSync(join(ROOT, path), join(copy, path), { recursive: true });
    for (const [path, text] of Object.entries(SOURCES)) {
      mkdirSync(dirname(join(copy, 'src', path)), { recursive: true });
      writeFileSync(join(copy, 'src', path), text);
    }
    symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'));
    const first = await buildIfStale();
    expect([first.status, first.stderr]).toEqual([0, expect.stringContaining('Building dist/ (no dist/ yet)')]);
  });

  afterAll(() => {
    if (copy) rmSync(copy, { recursive: true, force: true });
  });

  it('when current, builds nothing: the npm scripts run at once', async () => {
    const before = distTimes();
    expect(await run('npm', ['run', '--silent', 'token'], copy)).toEqual({ status: 0, stdout: 'header.c2VydmljZQ.signature\n', stderr: '' });
    expect(distTimes()).toEqual(before);
  });

  it('a changed source file is rebuilt, even restored with an older modification time', async () => {
    const file = join(copy, 'src', 'cli', 'realtime-gateway.ts');
    const { mtime } = statSync(file);
    writeFileSync(file, readFileSync(file, 'utf8').replace('run the service (same as npm start)', 'run the service (edited)'));
    expect(readFileSync(file, 'utf8')).toContain('(edited)');
    utimesSync(file, mtime, new Date(mtime.getTime() - 86_400_000)); // as git checkout, tar or cp -p can leave it
    const result = await buildIfStale();
    expect([result.status, result.stderr]).toEqual([0, expect.stringContaining('Building dist/ (sources changed since the last build)')]);
    expect(readFileSync(join(copy, 'dist', 'cli', 'realtime-gateway.js'), 'utf8')).toContain('run the service (edited)');
    // And then it is current again.
    const before = distTimes();
    expect(await buildIfStale()).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(distTimes()).toEqual(before);
  });

  it('an output whose source is gone is removed; a missing output is rebuilt', async () => {
    // What a removed or renamed source leaves behind: tsc does not delete its old outputs.
    for (const file of ['leftover.js', 'leftover.d.ts', 'leftover.js.map']) writeFileSync(join(copy, 'dist', file), '');
    expect(await buildIfStale()).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(readdirSync(join(copy, 'dist')).filter((file) => file.startsWith('leftover'))).toEqual([]);
    // tsc's build info alone would not emit it again.
    rmSync(join(copy, 'dist', 'cli', 'token.js'));
    const result = await buildIfStale();
    expect([result.status, result.stderr]).toEqual([0, expect.stringContaining('dist/cli/token.js is missing')]);
    expect(existsSync(join(copy, 'dist', 'cli', 'token.js'))).toBe(true);
  });

  it('a failed build says so on stderr, exits non-zero, and the next start tries again', async () => {
    const file = join(copy, 'src', 'cli', 'vapid.ts');
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, `${good}\nexport const broken: number = 'not a number';\n`);
    for (let attempt = 0; attempt < 2; attempt++) {
      const result = await run('npm', ['run', '--silent', 'vapid'], copy);
      expect(result.status).not.toBe(0);
      expect(result.stdout).toBe(''); // tsc's errors too: stdout is the command's output
      expect(result.stderr).toContain("Type 'string' is not assignable to type 'number'");
      expect(result.stderr).toContain('The build of dist/ failed');
    }
    // Back to the sources of the last good build: tsc had emitted the broken file, so this must build again.
    writeFileSync(file, good);
    const result = await buildIfStale();
    expect([result.status, result.stderr]).toEqual([0, expect.stringContaining('Building dist/')]);
    expect(readFileSync(join(copy, 'dist', 'cli', 'vapid.js'), 'utf8')).not.toContain('not a number');
  });
});
