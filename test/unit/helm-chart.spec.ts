import Ajv from 'ajv';
import { load } from 'js-yaml';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../support/process';

/**
 * Static checks of the chart, beside the rendering by a real helm (helm-render.spec.ts, helm-guards.spec.ts):
 * values against the schema, every value a template reads exists, template actions balance, and every
 * manifest carries the standard labels.
 */
const CHART = join(ROOT, 'helm', 'realtime-gateway');
const TEMPLATES = join(CHART, 'templates');
const values = load(readFileSync(join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;
const schema = JSON.parse(readFileSync(join(CHART, 'values.schema.json'), 'utf8'));
const templates = readdirSync(TEMPLATES).map((name) => ({ name, text: readFileSync(join(TEMPLATES, name), 'utf8') }));
const manifests = templates.filter((t) => t.name.endsWith('.yaml'));

function has(root: unknown, path: string[]): boolean {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== 'object' || !(key in node)) return false;
    node = (node as Record<string, unknown>)[key];
  }
  return true;
}

describe('Helm chart helm/realtime-gateway', () => {
  const validate = new Ajv({ allErrors: true, strict: false }).compile(schema);

  it('has default values that validate against values.schema.json', () => {
    expect(validate(values) ? [] : validate.errors).toEqual([]);
  });

  it('rejects values a user could get wrong', () => {
    const broken = (patch: (v: Record<string, any>) => void) => {
      const copy = structuredClone(values) as Record<string, any>;
      patch(copy);
      return validate(copy);
    };
    expect(broken((v) => (v.replicas = 3))).toBe(false); // typo of replicaCount
    expect(broken((v) => (v.redis.url = 'localhost:6379'))).toBe(false);
    expect(broken((v) => (v.gateway.presenceTtlMs = 10))).toBe(false);
    expect(broken((v) => (v.service.type = 'Internal'))).toBe(false);
    expect(broken((v) => (v.subscribeProxy.url = 'auth.internal/subscribe'))).toBe(false);
    expect(broken((v) => (v.subscribeProxy.timeoutMs = 10))).toBe(false);
    expect(broken((v) => (v.subscribeProxy.secret = 'ends with a newline\n'))).toBe(false);
    expect(broken((v) => (v.subscribeProxy.url = 'https://auth.internal/subscribe'))).toBe(true);
    expect(broken((v) => (v.webhook.url = 'backend.internal/events'))).toBe(false);
    expect(broken((v) => (v.webhook.secret = 'not-a-whsec-secret'))).toBe(false);
    expect(broken((v) => (v.webhook.retryS = 0))).toBe(false);
    expect(broken((v) => (v.webhook.url = 'https://backend.internal/events'))).toBe(true);
    expect(broken((v) => (v.redis.url = 'redis://redis:6379/0'))).toBe(true);
    expect(broken((v) => (v.turn.urls = 'turn:turn.example.com:3478'))).toBe(false); // a list, not a string
    expect(broken((v) => (v.turn.urls = ['turn://turn.example.com:3478']))).toBe(false);
    expect(broken((v) => (v.turn.urls = ['turn:user:pw@turn.example.com']))).toBe(false);
    expect(broken((v) => (v.turn.ttlSeconds = 10))).toBe(false);
    expect(broken((v) => (v.turn.urls = ['turn:turn.example.com:3478?transport=udp', 'turns:turn.example.com:5349?transport=tcp', 'stun:turn.example.com']))).toBe(true);
  });

  it('reads only values that exist in values.yaml', () => {
    const missing: string[] = [];
    for (const { name, text } of templates) {
      for (const [, path] of text.matchAll(/\.Values((?:\.[A-Za-z0-9_]+)+)/g)) {
        if (!has(values, path.slice(1).split('.'))) missing.push(`${name}: .Values${path}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it('balances every template action (if/range/with/define against end)', () => {
    for (const { name, text } of templates) {
      let depth = 0;
      for (const [, keyword] of text.matchAll(/\{\{-?\s*(if|range|with|define|block|end)\b/g)) {
        depth += keyword === 'end' ? -1 : 1;
        expect([name, depth >= 0]).toEqual([name, true]);
      }
      expect([name, depth]).toEqual([name, 0]);
    }
  });

  it('labels every manifest with the standard app.kubernetes.io labels', () => {
    const helpers = templates.find((t) => t.name === '_helpers.tpl')!.text;
    for (const label of ['app.kubernetes.io/name', 'app.kubernetes.io/instance', 'app.kubernetes.io/version', 'app.kubernetes.io/managed-by', 'helm.sh/chart']) {
      expect(helpers).toContain(`${label}:`);
    }
    for (const { name, text } of manifests) expect([name, text.includes('include "realtime-gateway.labels" .')]).toEqual([name, true]);
  });

  it('deploys the way the SPEC shutdown needs: probes, preStop, grace, no unavailable replica, locked-down pods', () => {
    const deployment = manifests.find((t) => t.name === 'deployment.yaml')!.text;
    expect(deployment).toMatch(/livenessProbe:\s+httpGet:\s+path: \/healthz/);
    expect(deployment).toMatch(/readinessProbe:\s+httpGet:\s+path: \/readyz/);
    expect(deployment).toContain('maxUnavailable: 0');
    expect(deployment).toMatch(/preStop:\s+exec:\s+command: \["sleep"/);
    expect(deployment).toContain('terminationGracePeriodSeconds: {{ include "realtime-gateway.terminationGracePeriod" . }}');
    expect(deployment).toContain('topologySpreadConstraints');
    expect(values.securityContext).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
    expect(values.podSecurityContext).toMatchObject({ runAsNonRoot: true });
    // Secrets reach the pod through secretKeyRef only, never as plain values.
    expect(deployment).not.toMatch(/value: \{\{ \.Values\.(jwt\.(secret|publicKey)|redis\.url|turn\.secret|subscribeProxy\.secret|webhook\.secret|push\.privateKey)/);
    const helpers = templates.find((t) => t.name === '_helpers.tpl')!.text;
    expect(helpers).toContain('add .Values.preStopSleepSeconds (div .Values.gateway.drainWindowMs 1000) (div .Values.gateway.shutdownGraceMs 1000) 5');
  });

  it('ships the optional objects (HPA v2, PDB on by default, ServiceMonitor, Ingress, NetworkPolicy) and warns about replicas without Redis', () => {
    const names = manifests.map((t) => t.name).sort();
    expect(names).toEqual(['channels-configmap.yaml', 'dashboard-configmap.yaml', 'deployment.yaml', 'hpa.yaml', 'ingress.yaml', 'networkpolicy.yaml', 'pdb.yaml', 'secret.yaml', 'service-internal.yaml', 'service.yaml', 'servicemonitor.yaml']);
    expect(manifests.find((t) => t.name === 'hpa.yaml')!.text).toContain('apiVersion: autoscaling/v2');
    expect(values.podDisruptionBudget).toMatchObject({ enabled: true });
    const notes = templates.find((t) => t.name === 'NOTES.txt')!.text;
    expect(notes).toContain('WARNING: more than one replica without Redis');
  });
});
