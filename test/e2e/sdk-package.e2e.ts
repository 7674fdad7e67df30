import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { ROOT } from '../support/process';
import { token } from '../support/tokens';

// npm pack and install, a tsc run and Chromium: ~15 s on a quiet 2-core machine, several times that under load.
jest.setTimeout(180_000);

/** Debian's chromium; `.ci/run` installs it when missing (no browser download is possible here). */
const CHROMIUM = '/usr/bin/chromium';
const PACKAGE = join(ROOT, 'packages', 'client');
const WS_VERSION = (JSON.parse(readFileSync(join(ROOT, 'node_modules', 'ws', 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (asynchronously: the gateway in this process keeps serving meanwhile). */
function run(command: string, args: string[], cwd: string, env: Record<string, string> = {}): Promise<Run> {
  // Without npm's own variables: `npm test` sets npm_config_* for its children, which would steer the scratch
  // project's npm (its prefix, its workspace) towards this repository.
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** Starts a script of the scratch project; resolves with its output once it exits, and `ready` once it prints `open`. */
function script(file: string, cwd: string, env: Record<string, string>): { ready: Promise<void>; done: Promise<Run> } {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^npm_/i.test(key)));
  const child = spawn(process.execPath, [file], { cwd, env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let opened: () => void;
  const ready = new Promise<void>((resolve) => (opened = resolve));
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (stdout.split('\n').includes('open')) opened();
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<Run>((resolve) => child.on('close', (status) => resolve({ status, stdout, stderr })));
  return { ready: Promise.race([ready, done.then((r) => Promise.reject(new Error(`${file} exited ${r.status} before it opened: ${r.stderr}`)))]), done };
}

async function publishAlert(gw: TestGateway, data: object): Promise<string> {
  const res = await fetch(gw.internal('/api/alerts'), {
    method: 'POST',
    headers: { authorization: `Bearer ${token({ sub: 'svc', role: 'service' })}`, 'content-type': 'application/json' },
    body: JSON.stringify({ data }),
  });
  expect(res.status).toBe(202);
  return String(((await res.json()) as { id: string }).id);
}

describe('@realtime-gateway/client as an npm package (packages/client)', () => {
  let work: string;
  let scratch: string;
  let tarball: string;
  let packed: { filename: string; files: { path: string }[]; unpackedSize: number };
  let gw: TestGateway;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'rg-sdk-package-'));
    expect([PACKAGE, existsSync(join(PACKAGE, 'package.json'))]).toEqual([PACKAGE, true]);
    // prepack builds dist/ when it is older than the source, so what is packed is what src/client says.
    const pack = await run('npm', ['pack', '--json', '--pack-destination', work], PACKAGE);
    expect([pack.status, pack.stderr]).toEqual([0, expect.any(String)]);
    [packed] = JSON.parse(pack.stdout) as [typeof packed];
    tarball = join(work, packed.filename);

    // A project of a user: the tarball as its only dependency, plus `ws` for Node 20 (no global WebSocket there).
    scratch = join(work, 'app');
    mkdirSync(scratch);
    writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch-app', version: '1.0.0', private: true }));
    const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball, `ws@${WS_VERSION}`], scratch);
    expect([install.status, install.stderr]).toEqual([0, expect.any(String)]);
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('packs only its build, README, CHANGELOG, LICENSE and package.json, and depends on nothing at run time', () => {
    const paths = packed.files.map((file) => file.path).sort();
    for (const path of paths) expect([path, /^(dist\/[\w.-]+\.(c|m)?js|dist\/[\w.-]+\.d\.m?ts|README\.md|CHANGELOG\.md|LICENSE|package\.json)$/.test(path)]).toEqual([path, true]);
    expect(paths).toEqual(expect.arrayContaining(['README.md', 'CHANGELOG.md', 'LICENSE', 'package.json', 'dist/index.cjs', 'dist/index.mjs', 'dist/index.d.ts', 'dist/index.d.mts']));
    // 13 files and 117 kB unpacked when written (two bundles of ~40 kB, the declarations, README, CHANGELOG): room to grow, not for a stray folder.
    expect(paths.length).toBeLessThanOrEqual(20);
    expect(packed.unpackedSize).toBeLessThan(250_000);

    const manifest = JSON.parse(readFileSync(join(scratch, 'node_modules', '@realtime-gateway', 'client', 'package.json'), 'utf8'));
    expect(manifest.dependencies).toBeUndefined();
    expect(manifest.peerDependenciesMeta).toEqual({ ws: { optional: true } });
    expect(manifest.sideEffects).toBe(false);
    // Installed: the package and the `ws` we asked for, nothing pulled in with them.
    const lock = JSON.parse(readFileSync(join(scratch, 'package-lock.json'), 'utf8')) as { packages: Record<string, unknown> };
    expect(Object.keys(lock.packages).sort()).toEqual(['', 'node_modules/@realtime-gateway/client', 'node_modules/ws']);
  });

  it('works from a CommonJS script: require(), connect, receive an alert', async () => {
    writeFileSync(
      join(scratch, 'alerts.cjs'),
      `const { RealtimeClient } = require('@realtime-gateway/client');
const client = new RealtimeClient({ url: process.env.GATEWAY_URL, getToken: () => process.env.GATEWAY_TOKEN, WebSocket: require('ws') });
client.on('open', () => console.log('open'));
client.on('error', (error) => console.error(error.code, error.error, error.message));
client.on('alert', (alert) => { console.log('alert ' + JSON.stringify(alert.data)); client.close(); });
console.log('from ' + require.resolve('@realtime-gateway/client'));
client.connect();
`,
    );
    const { ready, done } = script('alerts.cjs', scratch, { GATEWAY_URL: gw.ws('/api/alerts/subscribe'), GATEWAY_TOKEN: token({ sub: 'cjs', role: 'authority' }) });
    await ready;
    await publishAlert(gw, { via: 'cjs' });
    const result = await done;
    expect(result.status).toBe(0); // closed, nothing left running
    expect(result.stdout.split('\n')).toEqual([`from ${join(scratch, 'node_modules', '@realtime-gateway', 'client', 'dist', 'index.cjs')}`, 'open', 'alert {"via":"cjs"}', '']);
  });

  it('works from an ES module: import, subscribe to a channel on /ws, receive a publication', async () => {
    writeFileSync(
      join(scratch, 'channels.mjs'),
      `import { RealtimeClient } from '@realtime-gateway/client';
import WebSocket from 'ws';
const client = new RealtimeClient({ url: process.env.GATEWAY_URL, getToken: () => process.env.GATEWAY_TOKEN, WebSocket });
const alerts = client.subscribe('alerts');
alerts.on('subscribed', () => console.log('open'));
alerts.on('publication', (frame) => { console.log('publication ' + frame.channel + ' ' + JSON.stringify(frame.data)); client.close(); });
client.on('error', (error) => console.error(error.code, error.error, error.message));
console.log('from ' + import.meta.resolve('@realtime-gateway/client'));
client.connect();
`,
    );
    const { ready, done } = script('channels.mjs', scratch, { GATEWAY_URL: gw.ws('/ws'), GATEWAY_TOKEN: token({ sub: 'esm', role: 'authority' }) });
    await ready;
    await publishAlert(gw, { via: 'esm' });
    const result = await done;
    expect(result.status).toBe(0);
    expect(result.stdout.split('\n')).toEqual([`from file://${join(scratch, 'node_modules', '@realtime-gateway', 'client', 'dist', 'index.mjs')}`, 'open', 'publication alerts {"via":"esm"}', '']);
  });

  it('type-checks for require (node16 CommonJS), import (node16 ESM) and bundlers, with real types rather than any', async () => {
    const consumer = `
const client = new RealtimeClient({ url: 'wss://realtime.example.com/ws', getToken: async () => 'token' });
client.on('alert', (alert) => { const id: string | undefined = alert.id; void id; });
client.on('error', (error: GatewayError) => { const fatal: boolean = error.fatal; void fatal; });
const handle = client.subscribe('chat:lobby');
handle.on('publication', (frame) => { const channel: string = frame.channel; void channel; });
// @ts-expect-error: a URL is a string (fails as "unused" if the declarations were missing and this were any)
new RealtimeClient({ url: 1, getToken: () => 'token' });
`;
    writeFileSync(join(scratch, 'consumer.cts'), `import { RealtimeClient, GatewayError } from '@realtime-gateway/client';\n${consumer}`);
    writeFileSync(join(scratch, 'consumer.mts'), `import { RealtimeClient, GatewayError } from '@realtime-gateway/client';\n${consumer}`);
    writeFileSync(join(scratch, 'consumer.ts'), `import { RealtimeClient, GatewayError } from '@realtime-gateway/client';\n${consumer}`);
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    // The scratch project has no @types/node, and skipLibCheck is off: the declarations must stand on their own.
    const common = ['--noEmit', '--strict', '--skipLibCheck', 'false', '--lib', 'es2022,dom', '--target', 'es2022'];
    const node16 = await run(process.execPath, [tsc, ...common, '--module', 'node16', '--moduleResolution', 'node16', 'consumer.cts', 'consumer.mts'], scratch);
    expect(node16.stdout + node16.stderr).toBe('');
    expect(node16.status).toBe(0);
    const bundler = await run(process.execPath, [tsc, ...common, '--module', 'esnext', '--moduleResolution', 'bundler', 'consumer.ts'], scratch);
    expect(bundler.stdout + bundler.stderr).toBe('');
    expect(bundler.status).toBe(0);
  });

  describe('bundled by esbuild into a page that Chromium runs', () => {
    let browser: Browser;
    let server: Server;
    let origin: string;

    beforeAll(async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    });
    afterAll(async () => {
      await browser?.close();
      await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    });

    it('bundles the ESM build alone (no ws, no Node built-in), and the page shows an alert the gateway delivered', async () => {
      writeFileSync(
        join(scratch, 'page.js'),
        `import { RealtimeClient } from '@realtime-gateway/client';
const state = document.getElementById('state');
const log = document.getElementById('messages');
window.start = (url, token) => {
  const client = new RealtimeClient({ url, getToken: () => token });
  client.on('open', () => { state.textContent = 'open'; });
  client.on('close', ({ code }) => { state.textContent = 'closed ' + code; });
  client.on('alert', (alert) => {
    const li = document.createElement('li');
    li.textContent = JSON.stringify(alert.data);
    log.append(li);
  });
  client.connect();
};
`,
      );
      const result = await build({ absWorkingDir: scratch, entryPoints: ['page.js'], bundle: true, platform: 'browser', format: 'esm', outfile: 'public/page.js', metafile: true, logLevel: 'silent' });
      expect(result.errors).toEqual([]);
      expect(Object.keys(result.metafile.inputs).sort()).toEqual(['node_modules/@realtime-gateway/client/dist/index.mjs', 'page.js']);
      writeFileSync(join(scratch, 'public', 'index.html'), '<!doctype html><title>app</title><p id="state">idle</p><ul id="messages"></ul><script type="module" src="page.js"></script>\n');

      server = createServer((req, res) => {
        const file = req.url === '/' ? 'index.html' : req.url === '/page.js' ? 'page.js' : undefined;
        if (!file) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-type': file.endsWith('.js') ? 'text/javascript' : 'text/html' }).end(readFileSync(join(scratch, 'public', file)));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;

      const page = await browser.newPage();
      const failures: string[] = [];
      page.on('pageerror', (error) => failures.push(error.message));
      await page.goto(`${origin}/`);
      await page.waitForFunction(() => typeof (globalThis as unknown as { start?: unknown }).start === 'function');
      // The browser's own WebSocket: the page passes none.
      await page.evaluate(([url, jwt]) => (globalThis as unknown as { start: (u: string, t: string) => void }).start(url, jwt), [gw.ws('/api/alerts/subscribe'), token({ sub: 'page', role: 'authority' })]);
      await page.waitForSelector('#state:text-is("open")');
      await publishAlert(gw, { via: 'bundle' });
      await page.waitForSelector('#messages li:text-is(\'{"via":"bundle"}\')');
      expect(failures).toEqual([]);
      await page.close();
    });

    it('tree-shakes: a page that imports only backoffDelay gets none of the client', async () => {
      writeFileSync(join(scratch, 'backoff-only.js'), "import { backoffDelay } from '@realtime-gateway/client';\nconsole.log(backoffDelay(3));\n");
      const result = await build({ absWorkingDir: scratch, entryPoints: ['backoff-only.js'], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' });
      const code = result.outputFiles[0].text;
      expect(code).toContain('backoffDelay');
      expect(code).not.toContain('RealtimeClient');
      expect(code.length).toBeLessThan(1000); // the whole SDK bundles to ~39 kB
    });
  });
});
