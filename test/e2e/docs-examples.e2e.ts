import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { startTestGateway, type TestGateway } from '../support/gateway';
import { freePort, ROOT } from '../support/process';
import { TEST_SECRET } from '../support/tokens';

/**
 * Every code block marked runnable in README.md and docs/*.md is run, in document order, against a real gateway
 * started for that document, and its output compared with the `text output` block shown after it. The markers,
 * the substitutions and the matching rules are in docs/contributing.md ("Runnable examples"); keep them in step.
 */

/**
 * What `require(name)` gives a Node example, in the scratch directory it runs in: the packages a reader installs,
 * linked from this repository (the SDK is the workspace package packages/client, built by `npm run build`;
 * test/e2e/sdk-package.e2e.ts installs its packed tarball for real).
 */
const PACKAGES: Record<string, string> = {
  '@realtime-gateway/client': join(ROOT, 'packages', 'client'),
  ws: join(ROOT, 'node_modules', 'ws'),
  // docs/deploy.md's webhook receiver
  express: join(ROOT, 'node_modules', 'express'),
  standardwebhooks: join(ROOT, 'node_modules', 'standardwebhooks'),
};

/** Debian's chromium (scripts/test-tools.js installs it when missing), for `js runnable browser` blocks. */
const CHROMIUM = '/usr/bin/chromium';

/** How long a command may take: `npm run token` rebuilds first (5–17 s on 2 busy cores). */
const COMMAND_MS = 60_000;
/** How long a background example may take to print a line it promises (a connect is milliseconds; npx adds ~1 s). */
const LINE_MS = 20_000;

interface Block {
  doc: string;
  line: number;
  lang: string;
  mode: 'foreground' | 'background' | 'browser';
  code: string;
  /** The lines of the `text output` block after it, or undefined when the doc shows none. */
  expected?: string[];
}

/** The runnable blocks of one document, each with the output block that follows it (only prose in between). */
function runnableBlocks(doc: string, text: string): Block[] {
  const blocks: Block[] = [];
  // An output block belongs to the runnable block right before it (only prose between them), or to every one of
  // the background blocks in a row right before it: two ways to run one thing, in two terminals.
  let waiting: Block[] = [];
  const fence = /^```([^\n]*)\n([\s\S]*?)^```[ \t]*$/gm;
  for (const match of text.matchAll(fence)) {
    const words = match[1].trim().split(/\s+/);
    const line = text.slice(0, match.index).split('\n').length;
    if (words[0] === 'text' && words[1] === 'output') {
      if (!waiting.length) throw new Error(`${doc}:${line}: an output block must follow a runnable block (with only prose in between)`);
      for (const block of waiting) block.expected = match[2].replace(/\n$/, '').split('\n');
      waiting = [];
      continue;
    }
    if (words[1] !== 'runnable') {
      waiting = [];
      continue;
    }
    const mode = words[2] === 'background' ? 'background' : words[2] === 'browser' ? 'browser' : 'foreground';
    const block: Block = { doc, line, lang: words[0], mode, code: match[2], expected: undefined };
    if (block.mode !== 'background' || waiting.some((w) => w.mode !== 'background')) waiting = [];
    waiting.push(block);
    blocks.push(block);
  }
  return blocks;
}

/** Whether `actual` holds every expected line, in order, each a whole line where `…` stands for anything. */
function missingLines(expected: string[], actual: string): string[] {
  const lines = actual.split('\n').map((l) => l.replace(/\r$/, '').trimEnd());
  const patterns = expected.map((e) => new RegExp(`^${e.trimEnd().split('…').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`));
  let at = 0;
  for (let i = 0; i < patterns.length; i++) {
    while (at < lines.length && !patterns[i].test(lines[at])) at++;
    if (at === lines.length) return expected.slice(i);
    at++;
  }
  return [];
}

class Running {
  output = '';
  readonly exited: Promise<number | null>;
  private waiters: (() => void)[] = [];
  constructor(readonly child: ChildProcess) {
    const add = (chunk: Buffer) => {
      this.output += chunk.toString();
      for (const wake of this.waiters.splice(0)) wake();
    };
    child.stdout!.on('data', add);
    child.stderr!.on('data', add);
    this.exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
  }
  /** Resolves once the output holds `lines` (see missingLines), rejects after `ms` naming what is missing. */
  async printed(lines: string[], ms: number, what: string): Promise<void> {
    const deadline = Date.now() + ms;
    while (missingLines(lines, this.output).length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${what} did not print ${JSON.stringify(missingLines(lines, this.output))}; it printed:\n${this.output}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }
  stop(): void {
    // Its own process group (detached): npx and the wscat it starts end together.
    if (this.child.exitCode === null && this.child.signalCode === null) process.kill(-this.child.pid!, 'SIGTERM');
  }
}

/** Runs one document's blocks in order, as a reader pasting them into one terminal would. */
class Session {
  env: Record<string, string>;
  readonly dir = mkdtempSync(join(tmpdir(), 'rg-docs-'));
  readonly background: { block: Block; run: Running }[] = [];
  private browser?: Browser;
  private count = 0;

  constructor(private readonly gw: TestGateway) {
    // Tokens the examples mint (`npm run token`) are signed with the key the gateway was started with.
    this.env = { PATH: process.env.PATH!, HOME: process.env.HOME!, JWT_SECRET: TEST_SECRET };
    for (const [name, target] of Object.entries(PACKAGES)) {
      const dir = join(this.dir, 'node_modules', name);
      mkdirSync(join(dir, '..'), { recursive: true });
      symlinkSync(target, dir);
    }
  }

  /** The doc's ports (8080 public, 9090 internal) become the ports of the gateway started for the test. */
  substitute(code: string): string {
    const publicPort = String(this.gw.port);
    const internalPort = String(this.gw.internalPort);
    return code.replace(/(localhost|127\.0\.0\.1):(8080|9090)\b/g, (_, host: string, port: string) => `${host}:${port === '8080' ? publicPort : internalPort}`);
  }

  private spawn(block: Block): Running {
    const code = this.substitute(block.code);
    const file = join(this.dir, `block-${++this.count}`);
    if (block.lang === 'js') {
      writeFileSync(`${file}.js`, code);
      return new Running(spawn(process.execPath, [`${file}.js`], { cwd: this.dir, env: this.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true }));
    }
    // Variables a block sets (TOKEN=...) are exported (set -a) and kept for the next blocks, as in one terminal.
    const envFile = `${file}.env`;
    writeFileSync(`${file}.sh`, `set -a -e -o pipefail\ntrap 'env -0 > ${JSON.stringify(envFile)}' EXIT\n${code}`);
    const child = spawn('bash', [`${file}.sh`], { cwd: ROOT, env: this.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const run = new Running(child);
    if (block.mode === 'foreground') {
      void run.exited.then(() => {
        try {
          const pairs = readFileSync(envFile, 'utf8').split('\0').filter(Boolean);
          this.env = Object.fromEntries(pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]));
        } catch {
          // no env written: the block failed, and the test says so
        }
      });
    }
    return run;
  }

  async run(original: Block): Promise<void> {
    const block = { ...original, expected: original.expected?.map((line) => this.substitute(line)) };
    const where = `${block.doc}:${block.line}`;
    if (block.mode === 'browser') return this.runInBrowser(block, where);
    const run = this.spawn(block);
    if (block.mode === 'background') {
      // Kept open like a terminal: wscat ends when its input does. The next block runs once it printed its first line.
      this.background.push({ block, run }); // with its ports substituted in the output it promises
      if (block.expected?.length) await run.printed(block.expected.slice(0, 1), LINE_MS, where);
      return;
    }
    run.child.stdin!.end();
    const timer = setTimeout(() => run.stop(), COMMAND_MS);
    const code = await run.exited;
    clearTimeout(timer);
    await new Promise((resolve) => setImmediate(resolve)); // the env file is read on exit
    expect([where, code, code === 0 ? '' : run.output]).toEqual([where, 0, '']);
    if (block.expected) expect([where, missingLines(block.expected, run.output), run.output]).toEqual([where, [], run.output]);
  }

  /**
   * A browser snippet runs as a page script in Chromium, after `const token = '<$TOKEN of the session>'`. What it
   * logs is its output, one line per console.log, objects as JSON; an uncaught error fails it.
   */
  private async runInBrowser(block: Block, where: string): Promise<void> {
    this.browser ??= await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
    const page = await this.browser.newPage();
    const lines: string[] = [];
    const errors: string[] = [];
    let wake = () => {};
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('console', (message) => {
      // The line's place is taken now: its values arrive later, and not in order.
      const at = lines.push('') - 1;
      void Promise.all(message.args().map((arg) => arg.jsonValue().catch(() => String(arg)))).then((values) => {
        lines[at] = values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(' ');
        wake();
      });
    });
    await page.goto(this.gw.internal('/healthz'));
    await page.addScriptTag({ content: `const token = ${JSON.stringify(this.env.TOKEN)};\n${this.substitute(block.code)}` });
    const expected = block.expected ?? [];
    const deadline = Date.now() + LINE_MS;
    while (missingLines(expected, lines.join('\n')).length && !errors.length && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    await page.close();
    expect([where, errors, missingLines(expected, lines.join('\n')), lines]).toEqual([where, [], [], lines]);
  }

  /** Every background example printed all it promised by the end of the document (the alerts published after it). */
  async finish(): Promise<void> {
    try {
      for (const { block, run } of this.background) {
        if (block.expected) await run.printed(block.expected, LINE_MS, `${block.doc}:${block.line}`);
      }
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    for (const { run } of this.background) run.stop();
    await Promise.all(this.background.map(({ run }) => run.exited));
    this.background.length = 0;
    await this.browser?.close();
    this.browser = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The documents, and what a document's setting needs beyond a plain gateway: deploy.md's webhook receiver gets a
 * free port as PORT and the secret as WEBHOOK_SECRET, and the gateway posts its events there.
 */
const DOCS: Record<string, (receiverPort: number) => { gateway?: Record<string, string>; session?: Record<string, string> }> = {
  'README.md': () => ({}),
  'docs/server-api.md': () => ({}),
  'docs/protocol.md': () => ({}),
  'docs/push.md': () => ({}),
  'docs/events.md': () => ({}),
  'docs/deploy.md': (port) => {
    const secret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
    return { gateway: { WEBHOOK_URL: `http://127.0.0.1:${port}/realtime/events`, WEBHOOK_SECRET: secret }, session: { PORT: String(port), WEBHOOK_SECRET: secret } };
  },
};

describe('runnable examples in the docs', () => {
  for (const [doc, setting] of Object.entries(DOCS)) {
    it(`${doc}: every runnable block runs against a real gateway and prints what the doc shows`, async () => {
      const blocks = runnableBlocks(doc, readFileSync(join(ROOT, doc), 'utf8'));
      expect(blocks.length).toBeGreaterThan(0);
      const { gateway = {}, session: extra = {} } = setting(await freePort());
      const gw = await startTestGateway({ LOG_LEVEL: 'warn', PRESENCE_GRACE_MS: '0', ...gateway });
      const session = new Session(gw);
      Object.assign(session.env, extra);
      try {
        for (const block of blocks) await session.run(block);
        await session.finish();
      } finally {
        await session.close();
        await gw.close();
      }
    }, 300_000);
  }

  it('finds the markers as documented: a runnable block, its output block, and nothing from unmarked fences', () => {
    const text = ['```bash', 'not run', '```', '```bash runnable', 'echo hi', '```', 'It prints:', '```text output', 'hi', '```', '```js runnable background', 'x', '```'].join('\n');
    expect(runnableBlocks('t.md', text)).toEqual([
      { doc: 't.md', line: 4, lang: 'bash', mode: 'foreground', code: 'echo hi\n', expected: ['hi'] },
      { doc: 't.md', line: 11, lang: 'js', mode: 'background', code: 'x\n', expected: undefined },
    ]);
    expect(missingLines(['{"id":"…","ts":…}'], 'HTTP/1.1 202\n{"id":"1-0","ts":5}\n')).toEqual([]);
    expect(missingLines(['b', 'a'], 'a\nb\n')).toEqual(['a']);
  });
});
