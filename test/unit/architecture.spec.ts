import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { ROOT } from '../support/process';

/**
 * docs/architecture.md, checked: the folders of src/ and their imports (read from the source, resolved to
 * folders) form no cycle, and the core never names a feature or Redis.
 */
const SRC = join(ROOT, 'src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** The folder under src/ a file belongs to (`(top)` for app.ts, main.ts, gateways.ts). */
function folderOf(path: string): string {
  const rel = relative(SRC, path);
  return rel.includes('/') ? rel.split('/')[0] : '(top)';
}

interface Import {
  from: string;
  file: string;
  target: string;
}

const imports: Import[] = files(SRC).flatMap((file) => {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/(?:from|import)\s+'([^']+)'/g)].map(([, spec]) => ({
    from: folderOf(file),
    file: relative(SRC, file),
    target: spec.startsWith('.') ? folderOf(normalize(join(dirname(file), spec))) : `package:${spec}`,
  }));
});

/** Features: the folders that declare a gateway (@RealtimeGateway), read from the source, not typed by hand. */
const FEATURES = [...new Set(files(SRC).filter((file) => /^@RealtimeGateway\(/m.test(readFileSync(file, 'utf8'))).map(folderOf))].filter((f) => f !== 'upgrade');
const CORE = ['connection', 'channels', 'rooms', 'presence', 'upgrade'];

describe('architecture (docs/architecture.md)', () => {
  it('has no import cycle between folders', () => {
    const edges = new Map<string, Set<string>>();
    for (const { from, target } of imports) {
      if (target.startsWith('package:') || target === from) continue;
      if (!edges.has(from)) edges.set(from, new Set());
      edges.get(from)!.add(target);
    }
    const cycles: string[] = [];
    const visit = (node: string, path: string[]) => {
      for (const next of edges.get(node) ?? []) {
        if (path.includes(next)) cycles.push([...path.slice(path.indexOf(next)), next].join(' → '));
        else visit(next, [...path, next]);
      }
    };
    for (const node of edges.keys()) visit(node, [node]);
    expect(cycles).toEqual([]);
  });

  it('finds the features by their gateways, none of them a core folder', () => {
    expect(FEATURES.length).toBeGreaterThanOrEqual(3);
    expect(FEATURES.filter((f) => CORE.includes(f))).toEqual([]);
  });

  it('keeps the core free of features, and connection/ free of the door', () => {
    const offending = imports.filter(
      ({ from, target }) => (CORE.includes(from) && FEATURES.includes(target)) || (from === 'connection' && target === 'upgrade'),
    );
    expect(offending.map((i) => `${i.file} → ${i.target}`)).toEqual([]);
  });

  it('lets only the Redis implementations name ioredis or redis/', () => {
    const allowed = (file: string) => file.startsWith('redis/') || file.startsWith('channels/redis/') || file.startsWith('presence/redis-presence') || file.startsWith('presence/redis-denials') || file.startsWith('presence/presence-scripts') || file.startsWith('mode/cluster') || file.startsWith('events/redis-') || file.startsWith('push/redis-') || file.startsWith('receipts/redis-');
    const offending = imports.filter(({ file, target }) => (target === 'package:ioredis' || target === 'redis') && !allowed(file));
    expect(offending.map((i) => `${i.file} → ${i.target}`)).toEqual([]);
  });

  it('keeps client/ self-contained: it is also the package @realtime-gateway/client, which has no dependency', () => {
    // esbuild would bundle whatever client/ imports into the package: a server module, or ws, would ship with it.
    const client = imports.filter(({ from }) => from === 'client');
    expect(client.length).toBeGreaterThan(0);
    expect(client.filter(({ target }) => target !== 'client').map((i) => `${i.file} → ${i.target}`)).toEqual([]);
  });
});
