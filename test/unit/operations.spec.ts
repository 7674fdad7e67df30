import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../support/process';
import { promtool } from '../support/promtool';

describe('example alerting rules (docs/alerts.yml)', () => {
  it('pass promtool check rules and fire in promtool test rules', () => {
    expect(promtool(['check', 'rules', join(ROOT, 'docs', 'alerts.yml')]).status).toBe(0);
    const tested = promtool(['test', 'rules', join(ROOT, 'docs', 'alerts.test.yml')]);
    expect([tested.status, tested.output]).toEqual([0, expect.stringContaining('SUCCESS')]);
  });

  it('cover Redis down, delivery p99, 1011/1013 closes and no ready replicas', () => {
    const rules = readFileSync(join(ROOT, 'docs', 'alerts.yml'), 'utf8');
    for (const needle of ['ws_redis_up', 'ws_delivery_seconds_bucket', 'code="1011"', 'code="1013"', 'replicas_available']) expect(rules).toContain(needle);
  });
});

describe('Dockerfile (not built here: no Docker engine)', () => {
  const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const ignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n');

  it('builds in one stage and runs production dependencies as a non-root user in another', () => {
    expect(dockerfile.match(/^FROM /gm)).toHaveLength(2);
    expect(dockerfile).toMatch(/^FROM .* AS build$/m);
    expect(dockerfile).toContain('npm ci --omit=dev');
    expect(dockerfile).toContain('COPY --from=build /app/dist ./dist');
    expect(dockerfile).toMatch(/^USER node$/m);
  });

  it('exposes the port, checks /healthz, lets SIGTERM reach node, and bakes in no key', () => {
    expect(dockerfile).toMatch(/^EXPOSE 8080 9090$/m); // public and internal (SPEC "Ports")
    expect(dockerfile).toMatch(/^HEALTHCHECK[\s\S]*\/healthz/m);
    expect(dockerfile).toMatch(/^CMD \["node", "dist\/main.js"\]$/m); // exec form: node is PID 1 and gets the signal
    expect(dockerfile).not.toMatch(/JWT_SECRET=|REDIS_URL=|JWT_PUBLIC_KEY=/);
    for (const entry of ['node_modules', '.git', '.env', 'test', '*.pem', '*.key', '.npmrc']) expect(ignore).toContain(entry);
  });

  it('copies only what exists and what .dockerignore lets into the build context', () => {
    const sources = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1].split(/\s+/));
    expect(sources.sort()).toEqual(['package-lock.json', 'package-lock.json', 'package.json', 'package.json', 'packages/client', 'scripts/build-if-stale.js', 'src', 'tsconfig.build.json', 'tsconfig.json']);
    for (const source of sources) {
      expect([source, existsSync(join(ROOT, source))]).toEqual([source, true]);
      expect([source, ignore.includes(source)]).toEqual([source, false]);
    }
  });

  it('puts the CLI on the PATH as realtime-gateway, for kubectl exec ... realtime-gateway token (the chart README)', () => {
    const [, target, link] = /^RUN ln -s (\S+) (\S+)$/m.exec(dockerfile) ?? [];
    expect(link).toBe('/usr/local/bin/realtime-gateway'); // on the PATH of the node images
    // WORKDIR /app holds dist/ as the build made it: the link points at the CLI the build marks executable.
    expect(target).toBe('/app/dist/cli/realtime-gateway.js');
    expect(statSync(join(ROOT, 'dist', 'cli', 'realtime-gateway.js')).mode & 0o111).not.toBe(0);
    expect(readFileSync(join(ROOT, 'dist', 'cli', 'realtime-gateway.js'), 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
  });

  it('runs what npm start runs (after its build), with the same entry point', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    const cmd = JSON.parse(/^CMD (\[.*\])$/m.exec(dockerfile)![1]) as string[];
    expect(cmd.join(' ')).toBe(pkg.scripts.start);
    expect(pkg.scripts.prestart).toBe('node scripts/build-if-stale.js'); // the image builds in its first stage instead
    expect(dockerfile).toMatch(/^RUN npm run build$/m);
    expect(existsSync(join(ROOT, 'src', 'main.ts'))).toBe(true);
  });
});

describe('npm test on a machine without the tools (scripts/test-tools.js)', () => {
  it('stops at once naming each missing tool and the exact command, when it may not install', () => {
    const bin = mkdtempSync(join(tmpdir(), 'rg-nobin-'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const result = spawnSync(join(bin, 'node'), [join(ROOT, 'scripts', 'test-tools.js')], { env: { PATH: bin, TEST_TOOLS_NO_INSTALL: '1' }, encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/missing redis-server .*redis-cli .*promtool .*haproxy .*curl .*turnserver .*turnutils_uclient .*openssl .*ss .*python3/);
    expect(result.stderr).toContain('sudo apt-get update && sudo apt-get install -y --no-install-recommends redis-server redis-tools prometheus haproxy curl coturn openssl iproute2 python3');
  });

  it('passes quietly where everything is installed (this machine)', () => {
    const result = spawnSync(process.execPath, [join(ROOT, 'scripts', 'test-tools.js')], { encoding: 'utf8' });
    expect([result.status, result.stderr]).toEqual([0, '']);
  });
});
