import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './process';

/** Debian's squid; `npm test` installs it (scripts/test-tools.js). */
export const SQUID = '/usr/sbin/squid';

export interface ForwardProxyOptions {
  /**
   * `deny` (default): CONNECT is refused, as many corporate proxies do for anything but 443. Browsers send ws://
   * through an HTTP proxy as a CONNECT tunnel, so that is what blocks WebSocket for them; an absolute-URI request
   * (`GET http://host/ws` with `Upgrade: websocket`) loses its Upgrade header in squid 5 either way (no
   * `http_upgrade_request_protocols` is configured), so the gateway sees a plain GET. `allow`: the control case.
   */
  connect?: 'deny' | 'allow';
}

/**
 * A real forward proxy: Debian's squid on a free port of 127.0.0.1, with its own configuration, pid file and logs
 * in a temp dir, no cache, no pinger, in the foreground (`-N`), so it neither relies on nor touches a system squid.
 * Plain HTTP (GET, POST, OPTIONS, streamed responses such as SSE) goes through; WebSocket does not.
 */
export class ForwardProxy {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(options: ForwardProxyOptions = {}): Promise<ForwardProxy> {
    for (let attempt = 0; ; attempt++) {
      const dir = mkdtempSync(join(tmpdir(), 'rg-squid-'));
      // Started as root, squid runs as its `proxy` user: it must be able to write its logs and pid file here.
      chmodSync(dir, 0o777);
      const port = await freePort();
      const config = [
        `http_port 127.0.0.1:${port}`,
        `pid_filename ${join(dir, 'squid.pid')}`,
        `cache_log ${join(dir, 'cache.log')}`,
        `access_log stdio:${join(dir, 'access.log')}`,
        `coredump_dir ${dir}`,
        'cache deny all',
        'cache_mem 8 MB',
        'pinger_enable off',
        'shutdown_lifetime 0 seconds',
        'visible_hostname rg-test-proxy',
        'acl clients src 127.0.0.1/32',
        ...(options.connect === 'allow' ? [] : ['http_access deny CONNECT']),
        'http_access allow clients',
        'http_access deny all',
      ];
      writeFileSync(join(dir, 'squid.conf'), `${config.join('\n')}\n`);
      const child = spawn(SQUID, ['-N', '-f', join(dir, 'squid.conf')], { stdio: 'ignore' });
      const proxy = new ForwardProxy(child, port, dir);
      try {
        await proxy.ready(10_000);
        return proxy;
      } catch (error) {
        await proxy.stop();
        if (attempt === 4) throw error;
      }
    }
  }

  /** `http://127.0.0.1:<port>`: Chromium's `--proxy-server`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** squid's access log: one line per request, e.g. `... TCP_DENIED/403 ... CONNECT 127.0.0.1:41234 ...`. */
  accessLog(): string[] {
    try {
      return readFileSync(join(this.dir, 'access.log'), 'utf8').split('\n').filter(Boolean);
    } catch {
      return [];
    }
  }

  private log(): string {
    try {
      return readFileSync(join(this.dir, 'cache.log'), 'utf8').trim().split('\n').slice(-5).join(' | ');
    } catch {
      return '';
    }
  }

  /** Resolves once squid accepts connections on its port (its own: it logged that it listens there). */
  private async ready(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    let failed: Error | undefined;
    this.child.once('error', (error) => (failed = new Error(`squid could not be started (${error.message}); npm test installs Debian's squid`)));
    for (;;) {
      if (failed) throw failed;
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`squid exited before it listened on ${this.port}: ${this.log()}`);
      if (this.log().includes(`Accepting HTTP Socket connections at`) && (await listening(this.port))) return;
      if (Date.now() > deadline) throw new Error(`squid did not listen on ${this.port} within ${ms} ms: ${this.log()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  async stop(): Promise<void> {
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      const exited = once(this.child, 'exit');
      this.child.kill('SIGKILL');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
