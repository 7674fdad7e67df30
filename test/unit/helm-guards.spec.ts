import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { load as parseYaml } from 'js-yaml';
import jwt from 'jsonwebtoken';
import { find, helm, render, CHART, type K8sObject } from '../support/helm';
import { ROOT } from '../support/process';

// What an SRE meets first: the chart refuses values that would install a release that cannot work (no key: every
// pod crash-loops; several replicas without Redis: gateways that share nothing), saying which value to set; its
// README lists every value; `helm package` gives a chart that installs.

const SECRET = 'a-jwt-secret-of-at-least-thirty-two-bytes';

/** `helm template` that is expected to fail: its error output. */
function refused(set: Record<string, string | number | boolean>): string {
  try {
    render(set);
  } catch (error) {
    return String((error as { stderr?: string }).stderr ?? error);
  }
  throw new Error(`helm template rendered with ${JSON.stringify(set)}`);
}

describe('the Helm chart refuses a release that cannot work', () => {
  it('without a key source: names every value that gives one (test-first: it rendered before)', () => {
    const message = refused({});
    for (const value of ['jwt.secret', 'jwt.existingSecret', 'jwt.publicKey', 'jwt.jwksUrl', 'jwt.oidcIssuerUrl']) expect(message).toContain(value);
    // helm lint, helm install --dry-run and helm package's users meet the same refusal.
    expect(() => helm(['install', '--dry-run=client', 'rt', CHART])).toThrow(/jwt\.secret/);
    // Each key source alone is enough.
    for (const set of <Record<string, string>[]>[{ 'jwt.secret': SECRET }, { 'jwt.existingSecret': 'keys' }, { 'jwt.jwksUrl': 'https://idp.example.com/jwks.json' }, { 'jwt.oidcIssuerUrl': 'https://idp.example.com' }]) {
      expect(find(render(set), 'Deployment').kind).toBe('Deployment');
    }
    // secretPrevious is not a key source: it is the key being rotated out, beside jwt.secret.
    expect(refused({ 'jwt.secretPrevious': SECRET })).toContain('jwt.secret');
  });

  it('more than one replica, or autoscaling, without Redis: unless allowIndependentReplicas says so', () => {
    const replicas = refused({ 'jwt.secret': SECRET, replicaCount: 3 });
    expect(replicas).toMatch(/replicaCount is 3/);
    for (const value of ['redis.url', 'redis.existingSecret', 'replicaCount=1', 'allowIndependentReplicas=true']) expect(replicas).toContain(value);
    expect(refused({ 'jwt.secret': SECRET, 'autoscaling.enabled': true })).toMatch(/autoscaling\.enabled[\s\S]*redis\.url/);
    // The defaults: one replica, embedded; with Redis any number; and an explicit opt-in for replicas that share nothing.
    expect(find(render({ 'jwt.secret': SECRET }), 'Deployment').spec.replicas).toBe(1);
    expect(find(render({ 'jwt.secret': SECRET, replicaCount: 3, 'redis.url': 'redis://redis:6379/0' }), 'Deployment').spec.replicas).toBe(3);
    expect(find(render({ 'jwt.secret': SECRET, replicaCount: 3, 'redis.existingSecret': 'keys' }), 'Deployment').spec.replicas).toBe(3);
    expect(find(render({ 'jwt.secret': SECRET, replicaCount: 3, allowIndependentReplicas: true }), 'Deployment').spec.replicas).toBe(3);
    // Opted in, the NOTES still say what it means.
    const notes = helm(['install', '--dry-run=client', 'rt', CHART, '--set', `jwt.secret=${SECRET}`, '--set', 'replicaCount=2', '--set', 'allowIndependentReplicas=true']).split('NOTES:')[1];
    expect(notes).toMatch(/WARNING: more than one replica without Redis/);
  });

  it('the image: the name the Dockerfile build gives, tagged with the appVersion, overridable', () => {
    const chart = parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { appVersion: string };
    const image = (objects: K8sObject[]) => find(objects, 'Deployment').spec.template.spec.containers[0].image as string;
    expect(image(render({ 'jwt.secret': SECRET }))).toBe(`realtime-gateway:${chart.appVersion}`);
    expect(image(render({ 'jwt.secret': SECRET, 'image.repository': 'registry.example.com/team/realtime-gateway', 'image.tag': '1.2.3' }))).toBe('registry.example.com/team/realtime-gateway:1.2.3');
    // The app's version is the package's: the image built from this tree is what the chart runs.
    expect(chart.appVersion).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
  });
});

describe('tokens for operators, as the chart README and NOTES say to mint them', () => {
  /** The environment a pod of this render runs with, the chart's Secret resolved as Kubernetes would. */
  function podEnv(objects: K8sObject[], secrets: Record<string, Record<string, string>> = {}): Record<string, string> {
    const chartSecret = objects.find((o) => o.kind === 'Secret');
    const all = { ...secrets, ...(chartSecret ? { [chartSecret.metadata.name]: chartSecret.stringData ?? {} } : {}) };
    const env: Record<string, string> = { PATH: process.env.PATH ?? '' };
    type Env = { name: string; value?: string; valueFrom?: { secretKeyRef?: { name: string; key: string } } };
    for (const e of find(objects, 'Deployment').spec.template.spec.containers[0].env as Env[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      const ref = e.valueFrom?.secretKeyRef;
      if (ref && all[ref.name]?.[ref.key] !== undefined) env[e.name] = all[ref.name][ref.key];
    }
    return env;
  }
  // What `kubectl exec deploy/<release> -- realtime-gateway token ...` runs: the image links realtime-gateway to this.
  const cli = join(ROOT, 'dist', 'cli', 'realtime-gateway.js');

  it("realtime-gateway token in a pod signs with the deployed key (the chart's Secret or yours)", () => {
    for (const [objects, secrets] of [
      [render({ 'jwt.secret': SECRET, 'redis.url': 'redis://redis:6379/0', replicaCount: 2 }), {}],
      [render({ 'jwt.existingSecret': 'keys', 'jwt.existingSecretKey': 'hmac' }), { keys: { hmac: SECRET } }],
    ] as const) {
      const env = podEnv(objects, secrets);
      expect(env.NODE_ENV).toBe('production');
      const result = spawnSync(process.execPath, [cli, 'token', '--role', 'service', '--sub', 'billing-backend', '--ttl', '600'], { env, encoding: 'utf8' });
      expect([result.status, result.stderr]).toEqual([0, '']);
      const claims = jwt.verify(result.stdout.trim(), SECRET) as jwt.JwtPayload;
      expect(claims).toMatchObject({ sub: 'billing-backend', role: 'service' });
      expect(claims.exp! - claims.iat!).toBe(600);
    }
  });

  it('says where tokens come from when the pods hold no signing key (an identity provider, a public key)', () => {
    for (const set of <Record<string, string>[]>[{ 'jwt.jwksUrl': 'https://idp.example.com/jwks.json', 'jwt.audience': 'gw', 'jwt.issuer': 'https://idp.example.com' }, { 'jwt.oidcIssuerUrl': 'https://idp.example.com', 'jwt.audience': 'gw' }]) {
      const result = spawnSync(process.execPath, [cli, 'token', '--role', 'service'], { env: podEnv(render(set)), encoding: 'utf8' });
      expect(result.status).toBe(2);
      expect(result.stdout).toBe('');
      // Test-first: it said "JWT_PUBLIC_KEY is set" for a JWKS URL or an OIDC issuer too.
      expect(result.stderr).toMatch(/^token: this gateway verifies tokens with your identity provider's keys \((JWT_JWKS_URL|OIDC_ISSUER_URL)\): /);
    }
    const { publicKey } = generateKeyPairSync('ed25519');
    const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const result = spawnSync(process.execPath, [cli, 'token', '--role', 'admin'], { env: podEnv(render({}, ['--set-string', `jwt.publicKey=${pem}`])), encoding: 'utf8' });
    expect([result.status, result.stderr]).toEqual([2, expect.stringMatching(/^token: this gateway verifies tokens with a public key \(JWT_PUBLIC_KEY\): sign them with its private key/)]);
  });
});

describe('the Helm chart, packaged', () => {
  it('helm package gives realtime-gateway-<version>.tgz that renders, carrying its README, values and schema', () => {
    const chart = parseYaml(readFileSync(join(CHART, 'Chart.yaml'), 'utf8')) as { name: string; version: string };
    const out = mkdtempSync(join(tmpdir(), 'rg-package-'));
    expect(helm(['package', CHART, '-d', out])).toContain(`${chart.name}-${chart.version}.tgz`);
    const tgz = join(out, `${chart.name}-${chart.version}.tgz`);
    expect(parseYaml(helm(['show', 'chart', tgz]))).toMatchObject({ name: 'realtime-gateway', version: chart.version });
    expect(helm(['show', 'readme', tgz]).trimEnd()).toBe(readFileSync(join(CHART, 'README.md'), 'utf8').trimEnd()); // helm adds a newline
    expect(parseYaml(helm(['show', 'values', tgz]))).toEqual(parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')));
    // The packaged chart keeps its schema and its guards, and renders what the directory renders.
    expect(() => helm(['template', 'rt', tgz, '--set', 'replicas=3'])).toThrow(/replicas/);
    expect(() => helm(['template', 'rt', tgz])).toThrow(/jwt\.secret/);
    const fromPackage = helm(['template', 'rt', tgz, '--set', `jwt.secret=${SECRET}`, '--set', 'ingress.enabled=true']);
    expect(fromPackage).toBe(helm(['template', 'rt', CHART, '--set', `jwt.secret=${SECRET}`, '--set', 'ingress.enabled=true']));
    expect(helm(['lint', '--strict', tgz, '--set', `jwt.secret=${SECRET}`])).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
  });
});

describe('the chart README (helm/realtime-gateway/README.md)', () => {
  const script = join(ROOT, 'scripts', 'helm-docs.js');

  it('is what npm run helm:docs generates from values.schema.json and values.yaml', () => {
    const result = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
    expect([result.status, result.stderr]).toEqual([0, '']);
  });

  it('lists every value with its default and a description', () => {
    const readme = readFileSync(join(CHART, 'README.md'), 'utf8');
    const values = parseYaml(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
    const rows = new Map([...readme.matchAll(/^\| `([^`]+)` \| (.*) \| (.*) \|$/gm)].map((m) => [m[1], { default: m[2], meaning: m[3] }]));
    const leaves: string[] = [];
    const walk = (node: unknown, path: string[], schema: { properties?: Record<string, unknown> } | undefined) => {
      if (node !== null && typeof node === 'object' && !Array.isArray(node) && schema?.properties) {
        for (const [key, child] of Object.entries(node)) walk(child, [...path, key], schema.properties[key] as typeof schema);
      } else leaves.push(path.join('.'));
    };
    walk(values, [], JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8')));
    expect(leaves.length).toBeGreaterThan(100);
    for (const leaf of leaves) {
      expect([leaf, rows.has(leaf)]).toEqual([leaf, true]);
      expect([leaf, rows.get(leaf)!.meaning.trim().length > 10]).toEqual([leaf, true]);
    }
    expect(rows.get('replicaCount')!.default).toBe('`1`');
    expect(rows.get('jwt.existingSecretKey')!.default).toBe('`"JWT_SECRET"`');
  });

  it('refuses to generate a README for a value without a description, naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'rg-helm-docs-'));
    const schema = { type: 'object', properties: { gateway: { type: 'object', description: 'Gateway settings', properties: { logLevel: { type: 'string', description: 'LOG_LEVEL' }, undocumented: { type: 'integer' } } } } };
    writeFileSync(join(dir, 'values.schema.json'), JSON.stringify(schema));
    writeFileSync(join(dir, 'values.yaml'), 'gateway:\n  logLevel: info\n  undocumented: 3\n');
    writeFileSync(join(dir, 'README.md'), '<!-- values:start -->\n<!-- values:end -->\n');
    const result = spawnSync(process.execPath, [script, '--check', '--chart', dir], { encoding: 'utf8' });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('gateway.undocumented has no "description" in');
  });
});
